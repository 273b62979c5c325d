"""What every channel shares: how a message with choices looks where there are no buttons."""

from __future__ import annotations

from collections.abc import Sequence


def plain_text(text: str, choices: Sequence[str], numbered: bool) -> str:
    """The message as SMS or a terminal shows it: numbered options under the text."""
    if not numbered or not choices:
        return text
    return text + "\n" + "\n".join(f"{i}) {c}" for i, c in enumerate(choices, start=1))
