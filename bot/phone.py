"""Phone numbers: E.164 form (+47 by default) with plain Norwegian error messages, and masking
for logs (never a whole phone number or chat id in a log)."""

from __future__ import annotations

import re
import unicodedata

import phonenumbers
from phonenumbers import PhoneNumberType

_SEPARATORS = re.compile(r"[\s\-().]")
_ASCII_DIGITS = re.compile(r"[0-9]+")


def _ascii(raw: str) -> str:
    """Fullwidth forms and digits of any script read as the ASCII they stand for
    («９１２», «٩١٢» -> «912»), so no disguised number slips past a check on its real one."""
    s = unicodedata.normalize("NFKC", raw)
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() and not c.isascii() else c
                   for c in s)


class PhoneError(ValueError):
    pass


def normalise_phone(raw: str, default_country: str = "47") -> str:
    """'912 34 567' -> '+4791234567'; '0047 912 34 567' -> '+4791234567'."""
    s = _SEPARATORS.sub("", _ascii(raw).strip())
    if s.startswith("00"):
        s = "+" + s[2:]
    if s.startswith("+"):
        digits = s[1:]
        if not _ASCII_DIGITS.fullmatch(digits) or not 8 <= len(digits) <= 15:
            raise PhoneError(f"«{raw}» er ikke et telefonnummer (+ og 8 til 15 sifre)")
        if digits.startswith("47") and len(digits) != 10:
            raise PhoneError(f"«{raw}»: et norsk nummer har 8 sifre etter +47")
        return s
    if not _ASCII_DIGITS.fullmatch(s):
        raise PhoneError(f"«{raw}» er ikke et telefonnummer (bare sifre, mellomrom og +)")
    if len(s) == 8:
        return f"+{default_country}{s}"
    if len(s) == 10 and s.startswith("47"):
        return "+" + s
    raise PhoneError(f"«{raw}» er ikke et telefonnummer (et norsk nummer har 8 sifre)")


def valid_phone(e164: str) -> str:
    """The number, if it exists in its country's numbering plan (Google's libphonenumber
    data, via phonenumberslite); otherwise PhoneError in plain Norwegian. For numbers that
    are to get SMS from Veivis: a young person's, one in a MØTE command or a CSV import."""
    try:
        number = phonenumbers.parse(e164, None)
        ok = phonenumbers.is_valid_number(number)
    except phonenumbers.NumberParseException:
        ok = False
    if not ok:
        raise PhoneError(f"{pretty_phone(e164)} er ikke et telefonnummer som finnes "
                         "(sjekk sifrene)")
    return e164


def landline_warning(e164: str) -> str | None:
    """A plain Norwegian warning if the number is a landline (SMS to it does not arrive);
    None for a mobile number or one that may be either."""
    try:
        kind = phonenumbers.number_type(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return None
    if kind == PhoneNumberType.FIXED_LINE:
        return (f"advarsel: {pretty_phone(e164)} er et fastnummer; SMS fra Veivis kommer "
                "trolig ikke fram")
    return None


def pretty_phone(e164: str) -> str:
    """'+4791234567' -> '912 34 567' (Norwegian mobile), '+4722334455' -> '22 33 44 55'."""
    if e164.startswith("+47") and len(e164) == 11:
        d = e164[3:]
        if d[0] in "49":
            return f"{d[:3]} {d[3:5]} {d[5:]}"
        return f"{d[:2]} {d[2:4]} {d[4:6]} {d[6:]}"
    return e164
def mask_address(address: str) -> str:
    """'+4791234567' -> '+47******67'; a chat id keeps only its last two digits."""
    a = address.strip()
    if len(a) <= 4:
        return "*" * len(a)
    keep_head = 3 if a.startswith("+") else 0
    return a[:keep_head] + "*" * (len(a) - keep_head - 2) + a[-2:]
