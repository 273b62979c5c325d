"""The pipeline remembers the State each stored state text is (StateTexts): reading a text
back must give exactly what parsing it afresh gives, whatever state was written."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.engine import State, UserText, step
from bot.engine.model import FlowSet
from bot.service.pipeline import StateTexts, _state_text

from .conftest import NOW

SCRIPT = ["hei", "2", "ja", "ja", "nei", "ja", "ja", "ja", "nei", "4", "Fint møte", "meny",
          "1", "hjelp", "meny", "3", "språk", "3", "stopp", "start", "slett", "nei", "hmm"]


def fresh(text: str) -> State:
    return State.from_json(json.loads(text))


def conversation_states(flows: FlowSet) -> list[State]:
    out = []
    for lang in ("nb", "nn", "en"):
        state = State(lang=lang)
        for text in SCRIPT * 2:
            state = step(flows, state, UserText(text), NOW, {}).state
            out.append(state)
    return out


def test_written_states_read_back_as_they_parse(flows: FlowSet) -> None:
    texts = StateTexts()
    states = conversation_states(flows)
    assert len({json.dumps(s.to_json()) for s in states}) > 10
    for s in states:
        text = texts.encode(s)
        assert text == json.dumps(s.to_json(), ensure_ascii=False)  # as it always was
        assert texts.decode(text) == fresh(text) == s


def test_a_state_json_does_not_give_back_is_never_taken_for_itself() -> None:
    """to_json leaves out «nb» and 0, and JSON makes a tuple a list: such a state reads back
    as a different one, and the remembered state must be that one, not the written one."""
    odd = [State(flow="nb", step="nb"), State(flow="x", step="a", meeting=0),
           State(flow="x", answers={"a": 1}),  # type: ignore[dict-item]
           State(flow="x", step=("a",)),  # type: ignore[arg-type]
           State(lang=None),  # type: ignore[arg-type]
           State(flow="x", then=State(flow="nb", step="q")),
           State(consent=False), State(tries=False)]  # type: ignore[arg-type]
    texts = StateTexts()
    for s in odd:
        text = texts.encode(s)
        assert texts.decode(text) == fresh(text)
    assert texts.decode(texts.encode(State(flow="nb"))).flow is None


values = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.floats(0, 1),
                   st.sampled_from(["nb", "nn", "", "x", "ja", 'sa "hei"\\', "blå\n"]),
                   st.text(max_size=5))


@settings(max_examples=300)
@given(flow=values, step_=values, tries=values, lang=values, meeting=values, consent=values,
       answers=st.dictionaries(st.sampled_from(["a", "b", "æ\""]), st.text(max_size=4)),
       then=st.none() | st.builds(State, flow=values, meeting=values))
def test_any_state_reads_back_as_it_parses(flow: object, step_: object, tries: object,
                                           lang: object, meeting: object, consent: object,
                                           answers: dict[str, str], then: State | None) -> None:
    s = State(flow=flow, step=step_, tries=tries, lang=lang,  # type: ignore[arg-type]
              meeting=meeting, consent=consent, answers=answers, then=then)  # type: ignore[arg-type]
    texts = StateTexts()
    text = texts.encode(s)
    assert text == json.dumps(s.to_json(), ensure_ascii=False)
    assert texts.decode(text) == fresh(text)
    again = StateTexts()  # a text another process wrote: parsed, then remembered as parsed
    assert again.decode(text) == fresh(text) and again.decode(text) == fresh(text)


def test_only_so_many_texts_are_remembered() -> None:
    texts = StateTexts()
    for i in range(StateTexts.SIZE + 100):
        texts.decode(json.dumps({"flow": "x", "tries": i}))
    assert len(texts._known) == StateTexts.SIZE


def test_the_text_is_what_json_dumps_writes() -> None:
    s = State(flow="x", step='«sa» "hei"\\\n\u2028', answers={"k": "ø\x00", "é": ""}, tries=3,
              consent=False, then=State(flow="y", step="q", lang="en"), meeting=12)
    got = _state_text(s)
    assert got is not None and got == (json.dumps(s.to_json(), ensure_ascii=False), True)

