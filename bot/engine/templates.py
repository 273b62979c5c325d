"""Safe text templates: `{name}` is replaced by a value; nothing else is ever interpreted.

Substitution is one pass over the template, so a value (which may be a user's own text) is
inserted as it is and never scanned for variables itself. `{{` and `}}` write literal braces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

NAME = r"[a-zæøå_][a-zæøå0-9_]*"
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_NAME = re.compile(NAME)

# Variables the app fills in for every flow, with what is said when the value is unknown.
GLOBAL_VARIABLES: dict[str, str] = {
    "fornavn": "du",
    "veileder": "veilederen din",
    "kontor": "NAV-kontoret ditt",
    "møtetid": "tiden dere har avtalt",
    "møtested": "stedet dere har avtalt",
    "jobbtelefon": "55 55 33 33",
}


# Variables the engine fills in from the flow itself: a question's number and how many there
# are («{nr} av {antall}»), so adding a question can never leave a count wrong.
NUMBER = "nr"
COUNT = "antall"
FLOW_VARIABLES = frozenset({NUMBER, COUNT})


def variables_in(template: str) -> list[tuple[str, bool]]:
    """Every `{...}` in a template: (name, is_valid_name)."""
    found = []
    for m in _TOKEN.finditer(template):
        name = m.group(1)
        if name is not None:
            found.append((name, bool(_NAME.fullmatch(name))))
    return found


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill in `{name}` from values (then GLOBAL_VARIABLES defaults); leave unknowns visible."""

    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok == "{{":
            return "{"
        if tok == "}}":
            return "}"
        name = m.group(1)
        value = values.get(name)
        if value:
            return value
        return GLOBAL_VARIABLES.get(name, tok)

    if "{" not in template and "}" not in template:
        return template
    return _TOKEN.sub(sub, template)
