"""Random text in every state of every shipped flow: never a crash, always a sane state."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.engine import State, UserText, step
from bot.engine.model import FlowSet
from bot.engine.runtime import KEYWORDS

from .conftest import FLOWS, NOW, load

_report = load([FLOWS])
assert _report.flowset is not None
FLOWSET: FlowSet = _report.flowset


def all_states(flows: FlowSet) -> list[State]:
    states = [State(), State(consent=True), State(stopped=True), State(pending="erase"),
              State(consent=True, lang="nn"), State(consent=False, lang="en")]
    for f in flows.flows.values():
        for s in f.steps:
            if s.is_question:
                for tries in (0, 1, 2):
                    states.append(State(flow=f.id, version=f.version, step=s.id, tries=tries,
                                        consent=True))
                states.append(State(flow=f.id, version="old", step=s.id, consent=True))
    states.append(State(flow="gone", version="x", step="nowhere", consent=True))
    return states


STATES = all_states(FLOWSET)
texts = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=50),
    st.sampled_from([*KEYWORDS, "ja", "nei", "1", "5", "hopp", "👍", "", " ", "\x00", "x" * 5000]),
    st.builds(lambda a, b: f"{a} {b}", st.sampled_from(list(KEYWORDS)), st.text(max_size=10)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=st.sampled_from(STATES), text=texts)
def test_any_text_in_any_state(state: State, text: str) -> None:
    r = step(FLOWSET, state, UserText(text), NOW, {"fornavn": "Sara"})
    new = r.state
    # never moves a user into a step that does not exist (a global word such as HJELP may
    # leave a user where they were; their next answer then moves them on safely)
    if new.flow is not None and (new.flow, new.step) != (state.flow, state.step):
        flow = FLOWSET.get(new.flow)
        assert flow is not None
        current = flow.step(new.step or "")
        assert current is not None and current.is_question
    for reply in r.replies:
        assert reply.text.strip()
        assert "{" not in reply.text  # every variable was filled in
    assert len(r.replies) <= 4
    if state.flow and (f := FLOWSET.get(state.flow)) and f.anonymous:
        assert r.sensitive
    # the same input gives the same output
    assert step(FLOWSET, state, UserText(text), NOW, {"fornavn": "Sara"}) == r
