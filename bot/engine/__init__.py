"""The pure core: flow model, loader and checker, answer understanding and the step function.

Nothing in this package does I/O beyond reading flow files in the loader, reads the clock or
draws random numbers.
"""

from .loader import Diagnostic, Report, load
from .model import Flow, FlowSet, Kind, Option, Step
from .runtime import (
    AnonymousAnswer,
    EraseUser,
    Event,
    FlowEnded,
    Reply,
    Result,
    SaveAnswer,
    SetStopped,
    StartFlow,
    State,
    UserText,
    step,
)

__all__ = [
    "AnonymousAnswer", "Diagnostic", "EraseUser", "Event", "Flow", "FlowEnded", "FlowSet",
    "Kind", "Option", "Reply", "Report", "Result", "SaveAnswer", "SetStopped", "StartFlow",
    "State", "Step", "UserText", "load", "step",
]
