"""The system texts every installation must define in flows/system.yaml, and their variables."""

from __future__ import annotations

# key -> variables the text may use (beyond the global ones)
SYSTEM_TEXTS: dict[str, frozenset[str]] = {
    "help": frozenset(),
    "stopped": frozenset(),
    "started": frozenset(),
    "erase_confirm": frozenset(),
    "erased": frozenset(),
    "erase_kept": frozenset(),
    "reask_yesno": frozenset(),
    "reask_choice": frozenset({"antall"}),
    "reask_scale": frozenset({"min", "max"}),
    "reask_number": frozenset(),
    "reask_number_range": frozenset({"min", "max"}),
    "reask_text": frozenset(),
    "stuck": frozenset(),
    "stuck_optional": frozenset(),
    "skipped": frozenset(),
    "flow_changed": frozenset(),
    "nothing_running": frozenset(),
    "nudge": frozenset(),
    "no_meeting": frozenset(),  # said instead of a text about the meeting when there is none
    "yes": frozenset(),
    "no": frozenset(),
    # channels
    "unknown_chat": frozenset(),
    "link_invalid": frozenset(),
    "linked": frozenset(),
    "media": frozenset(),
    # messages to the veileder
    "forward_limit": frozenset(),
    "forward_no_veileder": frozenset(),
    "new_veileder": frozenset(),  # another veileder took over ({veileder}: the new one)
    "forward_closed": frozenset({"svartid"}),
    "forward_away": frozenset({"borte_til"}),
    "forward_away_closed": frozenset({"borte_til", "svartid"}),
    "forward_away_waits": frozenset({"borte_til", "svartid"}),
    # crisis: after the numbers (flows/crisis.yaml)
    "crisis_nobody": frozenset(),
    "crisis_told": frozenset(),
    "crisis_ask": frozenset(),
    "crisis_not_told": frozenset(),
    "crisis_check": frozenset(),  # a possible signal: are you thinking of hurting yourself?
    "crisis_check_no": frozenset(),
}
