"""What the engine remembers per flow set (a question's options, choices and text in each
language, and the option a text picks) gives exactly what working it out afresh gives."""

from __future__ import annotations

from dataclasses import replace

from bot.engine import answers as A
from bot.engine.model import FlowSet, Kind, Option
from bot.engine.runtime import (
    LANGUAGES,
    State,
    _choices,
    _make_choices,
    _options,
    _parse_choice,
    tr,
)

TEXTS = ["1", "2", "3", "4", "9", "0", "ja", "nei", "en", "to", "nummer 2", "den første",
         "hopp over", "", "  ", "😀", "1️⃣", "x" * 80, "2" + " " * 70]


def fresh_options(flows: FlowSet, flow_id: str, st_id: str, lang: str) -> tuple[Option, ...]:
    st = flows.flows[flow_id].step(st_id)
    assert st is not None
    if lang == "nb":
        return st.options
    return tuple(Option(tr(flows, lang, f"{flow_id}.{st.id}.{o.value}", o.text), o.value,
                        (o.text, *o.also), o.pos) for o in st.options)


def test_remembered_options_choices_and_picks_are_the_fresh_ones(flows: FlowSet) -> None:
    checked = 0
    for flow in flows.flows.values():
        for st in flow.steps:
            if st.kind is None:
                continue
            for lang in LANGUAGES:
                state = State(lang=lang)
                texts = [*TEXTS, *(o.text for o in fresh_options(flows, flow.id, st.id, lang)),
                         *(o.value for o in st.options), *(a for o in st.options for a in o.also)]
                for _ in range(2):  # worked out, then remembered
                    assert _choices(flows, flow, st, state) == _make_choices(flows, flow, st,
                                                                             state)
                    if st.kind is not Kind.CHOICE:
                        continue
                    opts = fresh_options(flows, flow.id, st.id, lang)
                    assert _options(flows, flow, st, lang) == opts
                    for t in texts:
                        assert _parse_choice(flows, flow, st, lang, t) == A.parse_choice(t, opts)
                        checked += 1
    assert checked > 100


def test_a_new_flow_set_does_not_reuse_an_old_ones_translations(flows: FlowSet) -> None:
    flow = next(f for f in flows.flows.values()
                if any(s.kind is Kind.CHOICE and s.options for s in f.steps))
    st = next(s for s in flow.steps if s.kind is Kind.CHOICE and s.options)
    before = _options(flows, flow, st, "en")
    key = (f"{flow.id}.{st.id}.{st.options[0].value}", st.options[0].text)
    other = replace(flows, catalogs={**flows.catalogs,
                                     "en": {**flows.catalogs.get("en", {}), key: "Changed"}})
    assert other.derived == {}
    assert _options(other, flow, st, "en")[0].text == "Changed"
    assert _options(flows, flow, st, "en") == before
