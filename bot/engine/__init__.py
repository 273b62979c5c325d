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
    Expire,
    FlowEnded,
    Nudge,
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
    "AnonymousAnswer",
    "Diagnostic",
    "EraseUser",
    "Event",
    "Expire",
    "Flow",
    "FlowEnded",
    "FlowSet",
    "Kind",
    "Nudge",
    "Option",
    "Reply",
    "Report",
    "Result",
    "SaveAnswer",
    "SetStopped",
    "StartFlow",
    "State",
    "Step",
    "UserText",
    "load",
    "step",
]
