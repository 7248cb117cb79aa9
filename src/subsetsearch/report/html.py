"""One self-contained ``report.html``: tables, the PNG figures embedded as data URIs, no file or
network it needs beside itself. A small script counts the figures that decoded and writes
``data-figures-loaded="LOADED/TOTAL"`` on <body> (what the headless-browser test reads)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from subsetsearch.internal.atomic import atomic_path

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 0.8em; font-size: 0.8em; overflow-x: auto; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.missing { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.5em 1em; }
.warning { background: #fdecea; border-left: 4px solid #d93025; padding: 0.5em 1em; }
.gallery-class h3 { font-size: 1em; margin: 1.2em 0 0.3em; }
.gallery-groups { display: flex; flex-wrap: wrap; gap: 0.8em; }
.gallery-group { border: 1px solid #ddd; padding: 0.3em; }
.gallery-label { font-size: 0.8em; color: #555; margin-bottom: 0.2em; }
figure.thumb { display: inline-block; margin: 0.2em; width: 118px; vertical-align: top; }
figure.thumb img { width: 84px; image-rendering: pixelated; border: 3px solid #bbb; }
figure.thumb.chosen img { border-color: #2a7ab9; }
figure.thumb figcaption { font-size: 0.7em; line-height: 1.25; overflow-wrap: anywhere; }
"""

_SCRIPT = """
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.querySelectorAll('img[data-figure]'));
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-figures-loaded', loaded + '/' + images.length);
});
"""


@dataclass
class Section:
    title: str
    parts: list[str] = field(default_factory=list)

    def text(self, words: str) -> Section:
        self.parts.append(f"<p>{html.escape(words)}</p>")
        return self

    def table(self, header: list[str], rows: list[list[object]]) -> Section:
        self.parts.append(html_table(header, rows))
        return self

    def figure(self, png: Path, caption: str) -> Section:
        self.parts.append(figure_html(png, caption))
        return self

    def warning(self, words: str) -> Section:
        self.parts.append(f'<p class="warning">{html.escape(words)}</p>')
        return self

    def raw(self, markup: str) -> Section:
        """HTML made by this package's own renderers (escaped there)."""
        self.parts.append(markup)
        return self

    def pre(self, text: str) -> Section:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")
        return self


def html_table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure_html(png: Path, caption: str) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    name = html.escape(Path(png).name)
    return (
        f'<figure><img data-figure="{name}" alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)} ({name})</figcaption></figure>"
    )


def write_html(path: Path, title: str, sections: list[Section], missing: list[str]) -> None:
    """The page: title, what is missing (if anything), then the sections in order."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if missing:
        items = "".join(f"<li>{html.escape(m)}</li>" for m in missing)
        parts.append(
            f'<div class="missing" id="missing"><strong>Missing from this report</strong><ul>{items}</ul></div>'
        )
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += section.parts
    parts.append("</body></html>")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
