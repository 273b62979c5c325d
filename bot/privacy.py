"""What may appear in logs: never message text, never a whole phone number or chat id."""

from __future__ import annotations


def mask_address(address: str) -> str:
    """'+4791234567' -> '+47******67'; a chat id keeps only its last two digits."""
    a = address.strip()
    if len(a) <= 4:
        return "*" * len(a)
    keep_head = 3 if a.startswith("+") else 0
    return a[:keep_head] + "*" * (len(a) - keep_head - 2) + a[-2:]
