"""Answer understanding, table-driven: how young people actually write."""

from __future__ import annotations

import pytest

from bot.engine.answers import clean, is_skip, parse_choice, parse_number, parse_scale, parse_yesno
from bot.engine.model import Option

YES = ["ja", "Ja", "JA", "ja!", " ja ", "jepp", "jo", "japp", "yes", "ok", "OK", "okei", "greit",
       "👍", "👍🏽", "ja 👍", "jaaaa", "Ja takk", "ja, gjerne", "jada", "Yes!!", "✅", "jepp.",
       "ja det gjorde hun", "selvfølgelig", "ja\n", "«ja»", "Jepp 😊"]
NO = ["nei", "Nei", "NEI!", "næ", "nope", "nah", "nei takk", "Nei takk.", "no", "👎", "neeei",
      "nei, det gjorde hun ikke", "❌", "ikke", "neida"]
UNCLEAR = ["", "   ", "kanskje", "ja og nei", "vet ikke", "hva?", "😊", "jeg skjønner ikke",
           "nei ja", "123", "x" * 5000, "jaa neei", "\x00\x01"]


@pytest.mark.parametrize("text", YES)
def test_yes(text: str) -> None:
    assert parse_yesno(text) == "ja"


@pytest.mark.parametrize("text", NO)
def test_no(text: str) -> None:
    assert parse_yesno(text) == "nei"


@pytest.mark.parametrize("text", UNCLEAR)
def test_unclear_yes_no(text: str) -> None:
    assert parse_yesno(text) is None


@pytest.mark.parametrize(("text", "n"), [
    ("1", 1), ("3", 3), ("3.", 3), (" 4 ", 4), ("en", 1), ("ett", 1), ("ei", 1), ("to", 2),
    ("tre", 3), ("fire", 4), ("Fem", 5), ("seks", 6), ("sju", 7), ("syv", 7), ("åtte", 8),
    ("ni", 9), ("ti", 10), ("nr 2", 2), ("nummer 3", 3), ("alternativ 2", 2), ("4 av 5", 4),
    ("jeg velger 2", 2), ("den andre", 2), ("første", 1), ("4️⃣", 4), ("⭐⭐⭐⭐", 4),
    ("three", 3), ("2!", 2), ("kanskje 3", 3),
])
def test_numbers(text: str, n: int) -> None:
    assert parse_number(text) == n


@pytest.mark.parametrize("text", ["", "to eller tre", "2 3", "mange", "en annen gang",
                                  "12345678901234", "-", "👍", "jeg vet ikke hva jeg skal si"])
def test_unclear_numbers(text: str) -> None:
    assert parse_number(text) is None


OPTIONS = (Option("NAV-kontoret", "nav"), Option("Et annet sted", "annet", ("ute", "kafe")),
           Option("Telefon eller video", "telefon"))


@pytest.mark.parametrize(("text", "value"), [
    ("1", "nav"), ("2", "annet"), ("3", "telefon"), ("tre", "telefon"), ("nav", "nav"),
    ("NAV-kontoret", "nav"), ("nav kontoret!", "nav"), ("telefon", "telefon"),
    ("video", "telefon"), ("kafe", "annet"), ("et annet sted", "annet"), ("nr 2", "annet"),
    ("den første", "nav"), ("tlf", None), ("4", None), ("0", None), ("ja", None), ("", None),
    ("sted", "annet"),
])
def test_choices(text: str, value: str | None) -> None:
    got = parse_choice(text, OPTIONS)
    assert (got.value if got else None) == value


@pytest.mark.parametrize(("text", "n"), [("5", 5), ("1", 1), ("0", None), ("6", None),
                                          ("fem", 5), ("⭐⭐", 2), ("bra", None)])
def test_scale(text: str, n: int | None) -> None:
    assert parse_scale(text, 1, 5) == n


@pytest.mark.parametrize(("text", "skip"), [("HOPP", True), ("hopp over", True), ("skip", True),
                                             ("-", True), ("hoppe", False), ("nei", False)])
def test_skip(text: str, skip: bool) -> None:
    assert is_skip(text) is skip


def test_clean_keeps_words_drops_control_characters() -> None:
    assert clean("  hei\x00 du\x1b[31m  ") == "hei du[31m"
    assert len(clean("x" * 5000)) == 2000
    assert clean("linje 1\nlinje 2") == "linje 1\nlinje 2"
