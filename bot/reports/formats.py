"""A `bot.reports.report.Report` as one self-contained HTML page, Markdown or CSV. Pure text out.

The HTML has no scripts and loads nothing (a Content-Security-Policy says so): charts are inline
SVG, styles inline, and it fits a phone 390 px wide (tested in Chromium). Markdown escapes every
text it did not write itself, so a feedback text cannot make a heading, a list or raw HTML. The
CSV starts with a byte order mark, so Excel reads it as UTF-8.
"""

from __future__ import annotations

import csv
import io
import re
from html import escape

from bot.engine.model import Kind
from bot.reports.report import FEWER, HIDDEN, Cell, Question, Report, number
from bot.timing.planner import OSLO

# said the same way in every format
TOO_FEW_ANSWERS = "For få svar til å vise fordelingen."
TOO_FEW_TEXTS = "Færre enn 5 skrev noe. Tekstene vises når det er minst 5."
TOO_FEW_MESSAGES = "Færre enn 5 meldinger i perioden. De vises når det er minst 5."
HOW_HIDDEN = (f"«{HIDDEN.capitalize()}»: tallet vises ikke, så ingen kan kjenne igjen dem som "
              "svarte. Vi skjuler tall fra 1 til 4. Da skjuler vi ofte ett tall til, så ingen "
              "kan regne seg fram til det lille tallet. Et skjult tall kan derfor være både "
              "lite og stort.")
BOM = "\ufeff"  # Excel opens a CSV as UTF-8 only with it


def _made(rep: Report) -> str:
    """When the report was made, in Oslo time (the readers' clock, summer and winter)."""
    t = rep.made_at.astimezone(OSLO)
    return f"Laget {t.strftime('%d.%m.%Y')} kl. {t.strftime('%H.%M')} norsk tid."


def _before(rep: Report) -> str:
    return (f"Forrige periode ({rep.period.before().label()}): {_n(rep.survey_n_before)} "
            f"svarte")


def _count(c: int | None) -> str:
    """A cell: its count, or the neutral mark (a hidden cell may be small or large)."""
    return HIDDEN if c is None else str(c)


def _pct(s: float | None) -> str:
    return "" if s is None else f"{round(s * 100)} %"


def _change(cell: Cell) -> str:
    """«+8 poeng» against the period before, when both shares are shown."""
    if cell.share is None or cell.before_share is None:
        return ""
    d = round((cell.share - cell.before_share) * 100)
    return "likt" if d == 0 else f"{d:+d} poeng"


def _heading(label: str) -> str:
    return label[:1].upper() + label[1:]


def _n(n: int | None) -> str:
    """A total: hidden only when it is below 5, so «færre enn 5» is true."""
    return FEWER if n is None else str(n)


# -- Markdown ----------------------------------------------------------------------------------

# Characters that mean something in CommonMark (and GitHub's tables) anywhere in a line: escaped
# with a backslash, which CommonMark allows before any ASCII punctuation. `<` and `&` included,
# so no raw HTML and no entity gets through.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~!&])")
# What makes a block only at the start of a line: a list item (-, +, 1. or 1)), a setext
# underline (=). Indentation (code) is stripped.
_MD_LINE_START = re.compile(r"^([-+=]|\d{1,9}[.)](?=\s|$))")


def _md_line(text: str) -> str:
    """One line of text as literal Markdown."""
    text = _MD_SPECIAL.sub(r"\\\1", text.strip())
    return _MD_LINE_START.sub(lambda m: m.group(1)[:-1] + "\\" + m.group(1)[-1], text)


def _md(text: str) -> str:
    """Text for one line of Markdown (a heading, a table cell, a list item): line breaks
    become spaces, everything else is literal."""
    return _md_line(" ".join(text.split()))


def _md_quote(text: str) -> list[str]:
    """Someone's text as a block quote: every line quoted and literal, then a blank line."""
    lines = [_md_line(line) for line in text.strip().splitlines()] or [""]
    return [f"> {line}".rstrip() for line in lines] + [""]


def markdown(rep: Report) -> str:
    out = [f"# {_md(rep.title)}", ""]
    out += [f"- {_md(s)}" for s in rep.summary]
    out += ["", _md(f"{_before(rep)} på spørsmålene, {_n(rep.feedback_n_before)} sendte en "
                    "melding."), ""]
    if rep.offices:
        out += ["## Hvem svarte, per kontor", "", "| Kontor | Svarte |", "| --- | ---: |"]
        out += [f"| {_md(o)} | {_count(c)} |" for o, c in rep.offices]
        out.append("")
    out += ["## Spørsmålene etter første møte", ""]
    for q in rep.questions:
        out += [f"### {_md(_heading(q.label))}", "", f"*{_md(q.text)}* Svarte: {_n(q.n)}.", ""]
        if q.kind is Kind.TEXT:
            out += _texts_md(q.texts)
            continue
        if q.n is None:
            out += [TOO_FEW_ANSWERS, ""]
            continue
        out += ["| Svar | Antall | Andel | Forrige periode | Endring |",
                "| --- | ---: | ---: | ---: | ---: |"]
        out += [f"| {_md(c.label)} | {_count(c.count)} | {_pct(c.share)} | {_count(c.before)} | "
                f"{_change(c)} |" for c in q.cells]
        if q.mean is not None:
            out.append(f"\nSnitt: {number(q.mean)}" + (
                f" (forrige periode {number(q.mean_before)})" if q.mean_before is not None
                else ""))
        out.append("")
    out += ["## Meldinger til ressursgruppa", ""]
    if not rep.feedback:
        out += [TOO_FEW_MESSAGES, ""]
    for g in rep.feedback:
        out += [f"### {_md(g.label)} ({_n(g.count)})", ""]
        for t in g.texts:
            out += _md_quote(t)
    out += ["", _md(f"{_made(rep)} {HOW_HIDDEN}")]
    return "\n".join(out).rstrip() + "\n"


def _texts_md(texts: tuple[str, ...] | None) -> list[str]:
    if texts is None:
        return [TOO_FEW_TEXTS, ""]
    return [line for t in texts for line in _md_quote(t)] + [""]


# -- CSV -----------------------------------------------------------------------------------------

def csv_text(rep: Report) -> str:
    """One row per answer option; `;` between fields, as spreadsheets in Norway expect; a
    byte order mark first, so Excel reads the letters æ, ø and å right."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";", lineterminator="\n")
    w.writerow(["periode", "kontor", "skjema", "spørsmål", "svar", "antall", "andel_prosent",
                "forrige_antall", "forrige_andel_prosent"])
    where = rep.office or "alle"
    period = rep.period.label()
    w.writerow([period, where, "deltakelse", "svarte på spørsmålene", "", _n(rep.survey_n), "",
                _n(rep.survey_n_before), ""])
    w.writerow([period, where, "deltakelse", "sendte melding", "", _n(rep.feedback_n), "",
                _n(rep.feedback_n_before), ""])
    for office, n in rep.offices:
        w.writerow([period, office, "deltakelse", "svarte på spørsmålene", "", _count(n), "", "",
                    ""])
    for q in rep.questions:
        if q.kind is Kind.TEXT:
            w.writerow([period, where, q.flow, q.label, "(fritekst)", _n(q.n), "",
                        _n(q.n_before), ""])
            continue
        for c in q.cells:
            w.writerow([period, where, q.flow, q.label, c.label, _count(c.count),
                        _pct(c.share).replace(" %", ""), _count(c.before),
                        _pct(c.before_share).replace(" %", "")])
        if q.mean is not None:
            w.writerow([period, where, q.flow, q.label, "snitt", number(q.mean), "",
                        number(q.mean_before) if q.mean_before is not None else "", ""])
    return BOM + buf.getvalue()


# -- HTML ---------------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; }
body { font: 17px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  color: #1a1a1a; background: #f6f6f3; }
main { max-width: 46rem; margin: 0 auto; padding: 1rem; overflow-wrap: anywhere; }
h1 { font-size: 1.5rem; line-height: 1.25; margin: .5rem 0 1rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; }
h3 { font-size: 1.05rem; margin: 1.25rem 0 .25rem; }
.summary { background: #fff; border-left: 6px solid #2a6f4e; padding: .75rem 1rem;
  border-radius: 6px; }
.summary p { margin: .25rem 0; }
.card { background: #fff; border-radius: 6px; padding: .75rem 1rem; margin: .75rem 0; }
.muted { color: #555; font-size: .9rem; }
svg { display: block; width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
td, th { text-align: left; padding: .25rem .3rem; border-bottom: 1px solid #ddd; }
td.num, th.num { text-align: right; }
td.num { white-space: nowrap; }
td.chg { white-space: normal; }
blockquote { margin: .5rem 0; padding: .5rem .75rem; background: #f0f0ec; border-radius: 4px; }
"""


def _bars(cells: tuple[Cell, ...]) -> str:
    """Horizontal bars for the shown cells; hidden ones say so instead of a bar. The widest
    bar leaves room for «100 (100 %)» inside the picture, and long labels are shortened."""
    row_h, width, label_w, number_w = 30, 320, 120, 86
    parts = []
    for i, c in enumerate(cells):
        y = i * row_h
        label = c.label if len(c.label) <= 16 else c.label[:15].rstrip() + "…"
        parts.append(f'<text x="2" y="{y + 19}" font-size="13">{escape(label)}</text>')
        if c.count is None or c.share is None:
            parts.append(f'<text x="{label_w}" y="{y + 19}" font-size="13" fill="#555">'
                         f"{HIDDEN}</text>")
            continue
        w = max(1, round(c.share * (width - label_w - number_w)))
        parts.append(f'<rect x="{label_w}" y="{y + 6}" width="{w}" height="18" rx="3" '
                     f'fill="#2a6f4e"/>')
        parts.append(f'<text x="{label_w + w + 6}" y="{y + 19}" font-size="13">{c.count} '
                     f"({_pct(c.share)})</text>")
    h = row_h * len(cells)
    return (f'<svg viewBox="0 0 {width} {h}" role="img" aria-label="Fordeling av svarene">'
            + "".join(parts) + "</svg>")


def _question_html(q: Question) -> str:
    head = (f'<div class="card"><h3>{escape(_heading(q.label))}</h3>'
            f'<p class="muted">{escape(q.text)} Svarte: {escape(_n(q.n))}.</p>')
    if q.kind is Kind.TEXT:
        if q.texts is None:
            return head + f"<p>{TOO_FEW_TEXTS}</p></div>"
        return head + "".join(f"<blockquote>{escape(t)}</blockquote>" for t in q.texts) + "</div>"
    if q.n is None:
        return head + f"<p>{TOO_FEW_ANSWERS}</p></div>"
    rows = "".join(
        f"<tr><td>{escape(c.label)}</td><td class=num>{escape(_count(c.count))}</td>"
        f"<td class=num>{_pct(c.share)}</td><td class=num>{escape(_count(c.before))}</td>"
        f"<td class='num chg'>{_change(c)}</td></tr>" for c in q.cells)
    mean = ""
    if q.mean is not None:
        mean = f"<p>Snitt: <strong>{number(q.mean)}</strong>" + (
            f" (forrige periode {number(q.mean_before)})" if q.mean_before is not None
            else "") + "</p>"
    return (head + _bars(q.cells) + mean + "<table><tr><th>Svar</th><th class=num>Antall</th>"
            "<th class=num>Andel</th><th class=num>Forrige</th><th class=num>Endring</th></tr>"
            + rows + "</table></div>")


def html(rep: Report) -> str:
    body = [f"<h1>{escape(rep.title)}</h1>", '<section class="summary">']
    body += [f"<p>{escape(s)}</p>" for s in rep.summary]
    body.append(f'<p class="muted">{escape(_before(rep))}, '
                f"{escape(_n(rep.feedback_n_before))} sendte en melding.</p></section>")
    if rep.offices:
        body.append('<h2>Hvem svarte, per kontor</h2><div class="card"><table>'
                    "<tr><th>Kontor</th><th class=num>Svarte</th></tr>")
        body += [f"<tr><td>{escape(o)}</td><td class=num>{escape(_count(c))}</td></tr>"
                 for o, c in rep.offices]
        body.append("</table></div>")
    body.append("<h2>Spørsmålene etter første møte</h2>")
    body += [_question_html(q) for q in rep.questions]
    body.append("<h2>Meldinger til ressursgruppa</h2>")
    if not rep.feedback:
        body.append(f'<div class="card"><p>{TOO_FEW_MESSAGES}</p></div>')
    for g in rep.feedback:
        body.append(f'<div class="card"><h3>{escape(g.label)} ({escape(_count(g.count))})</h3>'
                    + "".join(f"<blockquote>{escape(t)}</blockquote>" for t in g.texts)
                    + "</div>")
    body.append(f'<p class="muted">{_made(rep)} Svarene er anonyme. {escape(HOW_HIDDEN)}</p>')
    return ("<!doctype html>\n<html lang=\"nb\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'\">"
            f"<title>{escape(rep.title)}</title><style>{_CSS}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n")


FORMATS = {"html": html, "md": markdown, "csv": csv_text}
