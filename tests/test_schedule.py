"""The planner: reminder times in Oslo, quiet hours, daylight saving."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from bot.timing.planner import OSLO, Rules, at_oslo, is_quiet, next_allowed, plan


def oslo(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=OSLO)


def local(p: datetime) -> str:
    return p.astimezone(OSLO).strftime("%d.%m %H.%M")


REGISTERED = oslo(2026, 11, 20, 12)


def kinds(planned: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {p.slot.split("@")[0]: local(p.due_at) for p in planned}


def test_first_meeting_plan() -> None:
    got = kinds(plan(oslo(2026, 11, 24, 10), True, REGISTERED))
    assert got == {"prep": "20.11 12.00", "evening": "23.11 18.00", "before": "24.11 08.00",
                   "survey": "24.11 13.00", "survey_nudge": "25.11 13.00",
                   "survey_expire": "27.11 13.00"}


def test_followup_has_reminders_only() -> None:
    assert set(kinds(plan(oslo(2026, 11, 24, 14), False, REGISTERED))) == {"evening", "before"}


def test_reminder_in_quiet_hours_moves_to_nearest_allowed_time_before_the_meeting() -> None:
    # 2 hours before 09.00 is 07.00 (quiet): 08.00 is nearer than 20.59 the evening before
    assert kinds(plan(oslo(2026, 11, 24, 9), False, REGISTERED))["before"] == "24.11 08.00"
    # 2 hours before 08.00 is 06.00: 08.00 is the meeting itself, so 20.59 the evening before
    assert kinds(plan(oslo(2026, 11, 24, 8), False, REGISTERED))["before"] == "23.11 20.59"


def test_nothing_planned_in_quiet_hours_or_in_the_past() -> None:
    start = oslo(2026, 11, 24, 10)
    late = oslo(2026, 11, 23, 22, 30)  # registered at night, after the evening reminder
    got = kinds(plan(start, True, late))
    assert got["prep"] == "24.11 08.00" and "evening" not in got
    for p in plan(start, True, REGISTERED):
        if p.kind != "survey_expire":
            assert not is_quiet(p.due_at, Rules())


def test_survey_after_a_late_meeting_waits_for_the_morning() -> None:
    got = kinds(plan(oslo(2026, 11, 24, 18, 30), True, REGISTERED))
    assert got["survey"] == "25.11 08.00"


def test_spring_forward_a_time_that_does_not_exist() -> None:
    # 29 March 2026: clocks go from 02.00 to 03.00. 02.30 does not exist.
    t = at_oslo(date(2026, 3, 29), time(2, 30))
    assert t.astimezone(OSLO).strftime("%H.%M %Z") == "03.30 CEST"
    # a meeting on that Sunday at 10.00: the evening before is 18.00 CET (17.00 UTC),
    # and 2 hours before is 08.00 CEST (06.00 UTC), not 7 or 9 o'clock
    got = {p.slot.split("@")[0]: p.due_at for p in
           plan(oslo(2026, 3, 29, 10), False, oslo(2026, 3, 20, 12))}
    assert got["evening"] == datetime(2026, 3, 28, 17, 0, tzinfo=UTC)
    assert got["before"] == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)


def test_fall_back_a_time_that_happens_twice() -> None:
    # 25 October 2026: 03.00 CEST becomes 02.00 CET; 02.30 happens twice. The first is used.
    t = at_oslo(date(2026, 10, 25), time(2, 30))
    assert t == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    # a meeting Monday 26 October at 09.00 CET: the reminder is 08.00 CET = 07.00 UTC
    got = {p.slot.split("@")[0]: p.due_at for p in
           plan(oslo(2026, 10, 26, 9), False, oslo(2026, 10, 20, 12))}
    assert got["before"] == datetime(2026, 10, 26, 7, 0, tzinfo=UTC)
    assert got["evening"] == datetime(2026, 10, 25, 17, 0, tzinfo=UTC)  # 18.00 CET


def test_quiet_hours_across_the_change() -> None:
    # 20.59 CET is allowed, 21.00 is quiet; after the night, 08.00 local in the new offset
    assert not is_quiet(datetime(2026, 3, 28, 19, 59, tzinfo=UTC), Rules())
    assert is_quiet(datetime(2026, 3, 28, 20, 0, tzinfo=UTC), Rules())
    assert next_allowed(datetime(2026, 3, 28, 23, 0, tzinfo=UTC), Rules()) == datetime(
        2026, 3, 29, 6, 0, tzinfo=UTC)


def test_reminders_close_together_are_not_both_sent() -> None:
    # a meeting at 08.00 with the evening reminder set to 20.45: the 2-hours-before reminder
    # would move to 20.59 the same evening, 14 minutes later. Only one is sent.
    rules = Rules(evening_before=time(20, 45))
    got = kinds(plan(oslo(2026, 11, 24, 8), False, REGISTERED, rules))
    assert got == {"evening": "23.11 20.45"}
    # registered after the evening reminder time: only the one still ahead
    got = kinds(plan(oslo(2026, 11, 24, 19, 45), False, oslo(2026, 11, 23, 18, 10)))
    assert got == {"before": "24.11 17.45"}


def test_meeting_time_says_today_and_tomorrow_in_each_language() -> None:
    from bot.timing.display import meeting_time
    meeting = oslo(2026, 11, 24, 10)
    monday = oslo(2026, 11, 23, 12)
    assert meeting_time(meeting, "nb", monday) == "i morgen, tirsdag 24. november kl. 10.00"
    assert meeting_time(meeting, "nn", monday) == "i morgon, tysdag 24. november kl. 10.00"
    assert meeting_time(meeting, "en", monday) == "tomorrow, Tuesday 24 November at 10.00"
    assert meeting_time(meeting, "nb", oslo(2026, 11, 24, 7)) == (
        "i dag, tirsdag 24. november kl. 10.00")
    assert meeting_time(meeting, "nb", oslo(2026, 11, 20, 12)) == "tirsdag 24. november kl. 10.00"
