"""`rexbench report DIR --html OUT`: a self-contained static site from the report just written: `index.html`
(RESULTS.md, with the trust matrix sortable by its column headers), one page per ranker (`rankers/<ranker>.html`,
with a few samples' pair-map heatmaps and word highlights), and the figures copied beside them. No network
resource: HTML, one inline stylesheet and one small inline script per page.

The Markdown is the report's own (a known subset: headings, paragraphs, lists, tables, block quotes, links, images,
bold, italics and code), converted here; every text is escaped (`markup.html_text`)."""
from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import numpy as np

from .markup import html_text

STYLE = """body{font-family:system-ui,sans-serif;max-width:75em;margin:1.5em auto;padding:0 1em;color:#1a1a1a}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25em .45em;text-align:left;vertical-align:top}
#trust-matrix td{white-space:nowrap}
th{background:#f3f3f3}table.sortable th{cursor:pointer}table.sortable th:hover{background:#e4e4ff}
blockquote{border-left:4px solid #c33;margin:1em 0;padding:.2em 1em;background:#fff6f6}
img{max-width:100%}code{background:#f4f4f4;padding:0 .2em}em{color:#888}
.hl span{padding:0 .1em;border-radius:.2em}.heat td{width:1.6em;height:1.2em;padding:0;border:1px solid #fff}
.heat th{font-weight:normal;font-size:.8em;white-space:nowrap}"""

#: sorts a table.sortable by the clicked column: numbers (the cell's first number) before text, toggling order
SCRIPT = """document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',
function(){var t=th.closest('table'),b=t.tBodies[0],rows=Array.from(b.rows),up=th.dataset.dir!=='asc';
t.querySelectorAll('th').forEach(function(h){delete h.dataset.dir});th.dataset.dir=up?'asc':'desc';
function key(r){var s=r.cells[i]?r.cells[i].textContent.trim():'';var m=s.match(/^[_=]?\\s*(-?\\d+(\\.\\d+)?)/);
return m?[0,parseFloat(m[1])]:[1,s]}rows.sort(function(a,c){var x=key(a),y=key(c);if(x[0]!==y[0])return x[0]-y[0];
var d=x[1]<y[1]?-1:x[1]>y[1]?1:0;return up?d:-d});rows.forEach(function(r){b.appendChild(r)})})});"""

_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITAL = re.compile(r"(?<![\w*])_([^_|]+?)_(?!\w)")


class Site:
    """Converts the report's Markdown files to pages under `out`, rewriting links between them and copying
    images: `pages` maps a Markdown file (resolved) to its HTML path relative to `out`."""

    def __init__(self, out: Path, pages: dict[Path, str]):
        self.out, self.pages = out, {p.resolve(): h for p, h in pages.items()}

    def _target(self, src_md: Path, here: str, link: str, image: bool) -> str:
        if re.match(r"^[a-z]+:", link) or link.startswith("#"):
            return link if not image else ""            # no network resources: remote images are dropped
        path = (src_md.parent / link).resolve()
        depth = "../" * here.count("/")
        if path in self.pages:
            return depth + self.pages[path]
        if image and path.is_file():
            dst = self.out / "figures" / path.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dst)
            return depth + "figures/" + path.name
        return link

    def inline(self, text: str, src_md: Path, here: str) -> str:
        """Markdown inline markup of one line -> HTML (text escaped; links and images rewritten)."""
        parts, last = [], 0
        for m in _LINK.finditer(text):
            parts.append(self._plain(text[last:m.start()]))
            target = html_text(self._target(src_md, here, m.group(3), bool(m.group(1))))
            label = self._plain(m.group(2))
            parts.append(f'<img src="{target}" alt="{label}">' if m.group(1) else f'<a href="{target}">{label}</a>')
            last = m.end()
        parts.append(self._plain(text[last:]))
        return "".join(parts)

    @staticmethod
    def _plain(text: str) -> str:
        text = text.replace("\\|", "|")
        out, last = [], 0
        for m in _CODE.finditer(text):
            out.append(Site._emph(html.escape(text[last:m.start()], quote=False)))
            out.append(f"<code>{html.escape(m.group(1), quote=False)}</code>")
            last = m.end()
        out.append(Site._emph(html.escape(text[last:], quote=False)))
        return "".join(out)

    @staticmethod
    def _emph(text: str) -> str:
        return _ITAL.sub(r"<em>\1</em>", _BOLD.sub(r"<strong>\1</strong>", text))

    def convert(self, md: str, src_md: Path, here: str) -> str:
        """Block-level conversion of the report's Markdown subset."""
        lines, out, i = md.splitlines(), [], 0
        while i < len(lines):
            line = lines[i]
            if not line.strip():
                i += 1
            elif line.startswith("#"):
                level = len(line) - len(line.lstrip("#"))
                text = line[level:].strip()
                out.append(f'<h{level} id="{_slug(text)}">{self.inline(text, src_md, here)}</h{level}>')
                i += 1
            elif line.startswith("| "):
                block = []
                while i < len(lines) and lines[i].startswith("|"):
                    block.append(lines[i])
                    i += 1
                out.append(self._table(block, src_md, here, out))
            elif line.startswith("> "):
                block = []
                while i < len(lines) and lines[i].startswith(">"):
                    block.append(lines[i][1:].strip())
                    i += 1
                out.append("<blockquote>" + self.convert("\n".join(block), src_md, here) + "</blockquote>")
            elif re.match(r"^(- |\d+\. )", line):
                tag = "ol" if line[0].isdigit() else "ul"
                items = []
                while i < len(lines) and re.match(r"^(- |\d+\. )", lines[i]):
                    items.append(re.sub(r"^(- |\d+\. )", "", lines[i]))
                    i += 1
                out.append(f"<{tag}>" + "".join(f"<li>{self.inline(x, src_md, here)}</li>" for x in items)
                           + f"</{tag}>")
            else:
                block = []
                while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\| |> |- |\d+\. )", lines[i]):
                    block.append(lines[i])
                    i += 1
                out.append("<p>" + self.inline(" ".join(block), src_md, here) + "</p>")
        return "\n".join(out)

    def _table(self, block: list[str], src_md: Path, here: str, before: list[str]) -> str:
        def cells(row: str) -> list[str]:
            return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]

        head, body = cells(block[0]), [cells(r) for r in block[2:]]
        after_matrix = any(h.startswith('<h2 id="trust-matrix"') for h in before[-2:])
        attrs = ' id="trust-matrix" class="sortable"' if after_matrix else ' class="sortable"'
        th = "".join(f"<th>{self.inline(c, src_md, here)}</th>" for c in head)
        tr = "".join("<tr>" + "".join(f"<td>{self.inline(c, src_md, here)}</td>" for c in r) + "</tr>" for r in body)
        return f"<table{attrs}><thead><tr>{th}</tr></thead><tbody>{tr}</tbody></table>"

    def page(self, title: str, body: str) -> str:
        return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html_text(title)}</title>"
                f"<style>{STYLE}</style></head><body>\n{body}\n<script>{SCRIPT}</script></body></html>\n")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _color(v: float, lim: float) -> str:
    a = min(abs(v) / lim, 1.0) if lim else 0.0
    return f"rgba({'220,40,40' if v >= 0 else '40,80,220'},{a:.2f})"


def sample_html(e: dict) -> str:
    """One explanation: the document's words shaded by attribution and, where it has one, the query x document
    pair map as a heatmap table (red positive, blue negative; the value in each cell's title)."""
    words, s = e.get("doc_tokens") or [], np.asarray(e.get("doc_scores") or [], dtype=float)
    lim = float(np.abs(s).max()) if len(s) else 0.0
    spans = " ".join(f'<span title="{v:.4g}" style="background:{_color(v, lim)}">{html_text(w)}</span>'
                     for w, v in zip(words, s))
    out = [f"<h3>{html_text(e['explainer'])}: query {html_text(e['qid'])}, document {html_text(e['docid'])}</h3>",
           f"<p><strong>query:</strong> {html_text(' '.join(e.get('query_tokens') or []))}</p>",
           f'<p class="hl" style="line-height:1.9">{spans}</p>']
    pm = e.get("pair_map")
    if pm is not None and len(pm):
        m = np.asarray(pm, dtype=float)[:, :60]
        lim = float(np.abs(m).max()) or 1.0
        head = "".join(f"<th>{html_text(w)}</th>" for w in words[:m.shape[1]])
        rows = "".join("<tr><th>" + html_text(q) + "</th>" + "".join(
            f'<td title="{v:.4g}" style="background:{_color(v, lim)}"></td>' for v in r) + "</tr>"
            for q, r in zip(e.get("query_tokens") or [], m))
        out.append(f'<p>Pair map (query words x the first {m.shape[1]} document words):</p>'
                   f'<table class="heat"><thead><tr><th></th>{head}</tr></thead><tbody>{rows}</tbody></table>')
    return "\n".join(out)


def samples(exps: list[dict], ranker: str, per_ranker: int = 2) -> list[dict]:
    """A few explanations of one ranker to show: Grad-CAM's and one other explainer's on the ranker's first
    explained pair (the other: the first, by name, with a pair map, else with word scores)."""
    mine = [e for e in exps if e["ranker"] == ranker and e.get("doc_scores") is not None
            and not e.get("query_only")]
    if not mine:
        return []
    first = min((e["qid"], e["docid"]) for e in mine)
    pair = sorted((e for e in mine if (e["qid"], e["docid"]) == first), key=lambda e: e["explainer"])
    chosen = [e for e in pair if e["explainer"] == "gradcam"]
    others = [e for e in pair if e["explainer"] not in ("gradcam", "random")]
    others.sort(key=lambda e: (e.get("pair_map") is None, e["explainer"]))
    return (chosen + others)[:per_ranker]


def write_site(out: Path, results_md: Path, pages: dict[str, Path], exps: list[dict]) -> Path:
    """The site under `out` (created; files it writes are replaced, others left alone); returns index.html."""
    out.mkdir(parents=True, exist_ok=True)
    html_of = {results_md: "index.html", **{p: f"rankers/{r}.html" for r, p in pages.items()}}
    site = Site(out, html_of)
    (out / "rankers").mkdir(exist_ok=True)
    index = out / "index.html"
    index.write_text(site.page("rexbench results", site.convert(results_md.read_text(), results_md, "index.html")))
    for r, p in pages.items():
        here = f"rankers/{r}.html"
        body = site.convert(p.read_text(), p, here)
        shown = samples(exps, r)
        if shown:
            body += "\n<h2 id=\"samples\">Samples</h2>\n" + "\n".join(sample_html(e) for e in shown)
        (out / here).write_text(site.page(f"rexbench: {r}", body))
    return index
