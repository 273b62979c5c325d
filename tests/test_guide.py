"""flows/README.md followed literally, in a fresh clone, as a coordinator would: get the
command, reword a question, add a question, update the translations, check, preview, run the
transcripts, then the clone's whole pytest suite. Everything must be green at the end.

The clone is `git clone` of this repository, so it holds what is committed (not uncommitted
edits). It reuses the Python of this test run, which already has Veivis's packages: `./veivis`
finds them there and runs the clone's own code (PYTHONPATH), so nothing is installed and
nothing is fetched from the network. Inside the clone this test skips itself (no recursion).

The edits find their places from the flows themselves (the survey's first question, its last
one), never from shipped wording, so the test holds whatever coordinators have written.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from bot.engine import load
from bot.engine.model import Flow
from bot.engine.templates import COUNT, NUMBER, render

from .conftest import GUIDE_SKIP, ROOT
from .shipped import independent, wait_for_the_others

INSIDE = "VEIVIS_GUIDE_CLONE"  # set in the clone's run: this test must not run there again
SURVEY = "first_meeting_survey"
NEW_QUESTION = """\
  - id: skjema
    ask: "{nr} av {antall}. Fikk du hjelp med skjemaer?"
    type: yesno
    save: skjema
    label: fikk hjelp med skjemaer
"""
REWORDED = "{nr} av {antall}. Fikk du si hva som er viktigst for deg?"


def squash(s: str) -> str:
    return " ".join(s.split())


class Clone:
    """A fresh clone and the coordinator's terminal in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        bindir = str(Path(sys.executable).parent)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VEIVIS_")
                    and k != "PYTHONPATH"}
        # `python3` is this run's Python (it has Veivis's packages); the browser test's
        # settings stay as they are
        self.env.update({"PATH": bindir + os.pathsep + os.environ.get("PATH", ""), INSIDE: "1",
                         # the PostgreSQL variants ran in this suite already
                         "VEIVIS_SKIP_POSTGRES": "1"})
        for k in ("VEIVIS_REQUIRE_BROWSER", "VEIVIS_ARTIFACTS"):
            if k in os.environ:
                self.env[k] = os.environ[k]

    def veivis(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """What the guide tells the coordinator to type: ./veivis ..."""
        return subprocess.run(["./veivis", *args], cwd=self.root, env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=300)

    @property
    def survey_file(self) -> Path:
        return self.root / "flows" / f"{SURVEY}.yaml"

    def survey(self) -> Flow:
        report = load([self.root / "flows"], language=False)
        assert report.flowset is not None, [str(d) for d in report.errors]
        return report.flowset.flows[SURVEY]


def rendered(flow: Flow) -> dict[str, str]:
    """Each step's text as the bot says it (numbers filled in)."""
    out = {}
    for s in flow.steps:
        if s.text is not None:
            out[s.id] = squash(render(s.text, {NUMBER: str(s.number or ""),
                                               COUNT: str(flow.questions)}))
    return out


def step_lines(lines: list[str], sid: str) -> tuple[int, int]:
    """Where a step is written: from its `- id:` line up to the next step's."""
    start = next(i for i, line in enumerate(lines) if re.match(rf"\s*- id: {sid}\s*$", line))
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and not (lines[end].strip() and
                                    len(lines[end]) - len(lines[end].lstrip()) <= indent):
        end += 1
    return start, end


def reword(path: Path, sid: str, text: str) -> None:
    """«Skriv ny tekst etter ask:» (a folded text over several lines becomes one line)."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start, end = step_lines(lines, sid)
    i = next(i for i in range(start, end) if lines[i].lstrip().startswith("ask:"))
    indent = len(lines[i]) - len(lines[i].lstrip())
    j = i + 1
    while j < end and len(lines[j]) - len(lines[j].lstrip()) > indent and lines[j].strip():
        j += 1  # the continuation lines of a long text
    lines[i:j] = [" " * indent + f'ask: "{text}"\n']
    path.write_text("".join(lines), encoding="utf-8")


def insert_after(path: Path, sid: str, block: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    _, end = step_lines(lines, sid)
    lines[end:end] = [block]
    path.write_text("".join(lines), encoding="utf-8")


def delete_step(path: Path, sid: str) -> None:
    """«slett hele steget, fra - id: til neste - id:»."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start, end = step_lines(lines, sid)
    del lines[start:end]
    path.write_text("".join(lines), encoding="utf-8")


def fill_translations(root: Path, listing: str) -> int:
    """«gå til linjen, og skriv oversettelsen etter nynorsk: (eller engelsk:)». The test
    writes the bokmål text itself: the checker does not judge the language."""
    filled = 0
    for m in re.finditer(r"^(messages/\w+\.yaml):(\d+): '[^']*': «(.*)»$", listing, re.M):
        path = root / m.group(1)
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        i = int(m.group(2)) - 1
        key = lines[i].split(":", 1)[0]
        assert key.strip() in ("nynorsk", "engelsk"), lines[i]
        text = m.group(3).replace("\\", "\\\\").replace('"', '\\"')
        lines[i] = f'{key}: "{text}"\n'
        path.write_text("".join(lines), encoding="utf-8")
        filled += 1
    return filled


FAIL = re.compile(r"^(?P<path>\S+\.yaml):(?P<line>\d+): (?P<msg>.*)$")
SAID = re.compile(r"boten skulle si «(?P<want>.*)», men sa «(?P<got>.*)»$")
ALSO = re.compile(r"boten sa også «(?P<got>.*)», som ikke står i testen")


class Transcripts:
    """«Når en samtaletest feiler etter en endring»: each rule of the guide, applied to the
    line the failure names, for the three edits this coordinator made."""

    def __init__(self, before: dict[str, str], after: dict[str, str], added: str,
                 removed: str) -> None:
        self.before, self.after = before, after
        self.added, self.removed = after[added], before[removed]
        self.yaml = YAML(typ="rt")
        self.yaml.width = 4096
        self.yaml.indent(mapping=2, sequence=4, offset=2)

    def fix(self, root: Path, failure: str) -> None:
        m = FAIL.match(failure)
        assert m, failure
        path, line, msg = root / m["path"], int(m["line"]), m["msg"]
        doc = self.yaml.load(path.read_text(encoding="utf-8"))
        conv = doc["conversation"]
        i = next(k for k in range(len(conv)) if conv.lc.item(k)[0] + 1 == line)
        said, also = SAID.match(msg), ALSO.match(msg)
        if said and squash(said["got"]) == self.added:
            # «Du har lagt til et spørsmål: legg til to linjer der spørsmålet kommer»
            conv.insert(i, CommentedMap([("user", "ja")]))
            conv.insert(i, CommentedMap([("bot", said["got"])]))
        elif said and squash(said["want"]) in self.removed:
            # «Du har tatt bort et spørsmål: slett bot-linjen og user-linjen under den»
            del conv[i]
            if i < len(conv) and "user" in conv[i]:
                del conv[i]
        elif said and squash(said["got"]) in self.after.values():
            conv[i]["bot"] = said["got"]  # «Du har endret en tekst: skriv den nye teksten»
        elif also and squash(also["got"]) == self.added:
            conv.insert(i + 1, CommentedMap([("user", "ja")]))
            conv.insert(i + 1, CommentedMap([("bot", also["got"])]))
        else:
            raise AssertionError(f"not explained by the edits: {failure}")
        with path.open("w", encoding="utf-8") as f:
            self.yaml.dump(doc, f)


@pytest.mark.skipif(os.environ.get(INSIDE) == "1", reason="inside the clone: no recursion")
@pytest.mark.timeout(1500)  # it runs the clone's whole suite: longer than one test's 300 s
def test_the_coordinators_guide_followed_in_a_fresh_clone(tmp_path: Path,
                                                          request: pytest.FixtureRequest
                                                          ) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    root = tmp_path / "veivis"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(root)], check=True, timeout=120)
    c = Clone(root)
    guide = (root / "flows" / "README.md").read_text(encoding="utf-8")
    for command in ("./veivis flows check", "./veivis chat --flow first_meeting_survey",
                    "./veivis flows test", "./veivis flows translations"):
        assert command in guide

    # Kom i gang: the command works as the guide writes it
    p = c.veivis("flows", "check")
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"flyter sjekket: 0 feil", p.stderr), p.stderr
    before = c.survey()
    numbered = [s for s in before.steps if s.number is not None]
    first, last = numbered[0], [s for s in numbered if not s.checklist][-1]
    old_texts = rendered(before)

    # Slik endrer du et spørsmål / Slik legger du til et spørsmål
    reword(c.survey_file, first.id, REWORDED)
    insert_after(c.survey_file, first.id, NEW_QUESTION)
    p = c.veivis("flows", "check")
    if len(numbered) + 1 > 8:  # «Blir det flere, sier ./veivis flows check fra»
        assert p.returncode == 1 and "kan ha høyst 8 spørsmål" in p.stdout, p.stdout
        delete_step(c.survey_file, last.id)  # «Ta da bort et annet spørsmål»
        p = c.veivis("flows", "check")
    assert p.returncode == 0, p.stdout + p.stderr
    after = c.survey()
    new_texts = rendered(after)
    assert new_texts["skjema"] == f"2 av {after.questions}. Fikk du hjelp med skjemaer?"
    assert new_texts[first.id].startswith(f"1 av {after.questions}. Fikk du si hva")

    # Nynorsk og engelsk: the command lists what is missing; the coordinator writes it
    assert "mangler" in p.stdout
    p = c.veivis("flows", "translations")
    assert p.returncode == 0, p.stdout + p.stderr
    assert fill_translations(root, p.stdout) >= 4  # reworded and new, in two languages
    p = c.veivis("flows", "check")
    assert p.returncode == 0 and p.stdout == "", p.stdout + p.stderr
    assert "0 feil, 0 advarsler" in p.stderr

    # the preview shows the new wording and numbers, and stores nothing
    p = c.veivis("chat", "--flow", SURVEY, stdin="ja\nja\nja\n")
    assert p.returncode == 0, p.stderr
    assert new_texts[first.id] in squash(p.stdout) and new_texts["skjema"] in squash(p.stdout)
    assert not list(root.glob("*.db"))

    # Samtaletester: fix each failure by the guide's rules until all pass
    rules = Transcripts(old_texts, new_texts, "skjema",
                        last.id if last.id not in new_texts else "")
    for _ in range(60):
        p = c.veivis("flows", "test")
        if p.returncode == 0:
            break
        failures = [line for line in p.stdout.splitlines() if FAIL.match(line)]
        assert failures, p.stdout + p.stderr
        rules.fix(root, failures[0])
    assert p.returncode == 0 and p.stdout.strip().endswith("bestått, 0 feilet"), p.stdout

    # and the clone's test suite: every test that read the shipped flows or messages in this
    # run (or started a process that may have), and every test that did not run here; the
    # others run the same code on the same files in the clone (tests/shipped.py)
    wait_for_the_others()  # under pytest-xdist: the other workers' tests count too
    skip = independent(request.session.items)
    (tmp_path / "skip.txt").write_text("\n".join(skip), encoding="utf-8")
    env = {**c.env, "PYTHONPATH": str(root), GUIDE_SKIP: str(tmp_path / "skip.txt")}
    # on two processes (pytest-xdist), a test module on one: this run only waits meanwhile
    p = subprocess.run([sys.executable, "-m", "pytest", "-x", "-p", "no:cacheprovider",
                        "-n", "2", "--dist", "loadfile"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-2000:]
    ran = re.search(r"(\d+) passed", p.stdout)
    print(f"the clone ran {ran[1] if ran else '?'} tests; {len(skip)} read nothing shipped")
