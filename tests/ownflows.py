"""The test suite's own small flows: a welcome, a menu and a survey. Tests that need a flow
with a known shape or wording use these, never the shipped flows (those belong to the
coordinators, who may reword them or add questions at any time)."""

from __future__ import annotations

WELCOME = """\
id: welcome
title: Velkommen
steps:
  - id: hei
    say: Velkommen hit.
  - id: sprak
    ask: Hvilket språk?
    type: choice
    save: språk
    options:
      - text: Bokmål
        value: nb
      - text: Nynorsk
        value: nn
      - text: English
        value: en
  - id: ok
    ask: Er det greit?
    type: yesno
    save: samtykke
    next:
      nei: nei
  - id: takk
    say: Takk skal du ha.
    end: true
  - id: nei
    say: Greit. Skriv START hvis du vil.
"""

WELCOME_EN = """\
welcome.ok:
  bokmål: Er det greit?
  engelsk: Is that all right?
welcome.takk:
  bokmål: Takk skal du ha.
  engelsk: Thank you.
"""

MENU = """\
id: menu
title: Meny
steps:
  - id: valg
    ask: Velg et tall.
    type: choice
    options:
      - text: Møtet mitt
        value: mote
      - text: Noe annet
        value: annet
    next:
      mote: mote
      annet: annet
  - id: mote
    say: Du skal møte {veileder} {møtetid}. Husk det.
    end: true
  - id: annet
    say: Ok.
"""

# anonymous, with numbered questions: a yes/no, a scale and an optional text
SURVEY = """\
id: survey
title: Tre spørsmål
anonymous: true
steps:
  - id: intro
    ask: Vil du svare på {antall} spørsmål?
    type: yesno
    next:
      nei: slutt
  - id: a
    ask: "{nr} av {antall}. Var det bra?"
    type: yesno
    save: bra
  - id: b
    ask: "{nr} av {antall}. Hvor bra?"
    type: scale
    save: hvor
  - id: c
    ask: "{nr} av {antall}. Noe mer?"
    type: text
    save: mer
    optional: true
  - id: takk
    say: Takk.
    end: true
  - id: slutt
    say: Helt greit.
"""

ALL = {"welcome.yaml": WELCOME, "menu.yaml": MENU, "survey.yaml": SURVEY}
