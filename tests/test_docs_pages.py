"""The documentation cites only what a reader of the repository can open, and renders as written: no
page names a path outside the repository or a tracker's issue number, and the built site has no
list that a table broke (a paragraph starting with "- ") and no table left as text."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "benchmarks").glob("*.md")]
)

#: "issue 17", "Issue 16's", "issues 12 and 13", "#17": a tracker's numbers mean nothing to a reader.
ISSUE = re.compile(r"\bissues?\s+#?\d+|(?<![\w&/#])#\d+\b", re.IGNORECASE)
#: A link target, or a path in backticks, that starts by climbing (``../``).
CLIMBING = re.compile(r"\]\((\.\./[^)\s]*)\)|`(\.\./[^`\s]*)`")


def outside_paths(page: Path, text: str) -> list[str]:
    """The relative paths ``text`` cites that lead out of the repository: links from ``page``'s
    folder, paths in backticks from the repository's root (as the pages name files)."""
    found = []
    for match in CLIMBING.finditer(text):
        link = match.group(1)
        target = (link or match.group(2)).split("#")[0]
        base = page.parent if link else ROOT  # links are relative to their page; the docs name paths from the root
        if not (base / target).resolve().is_relative_to(ROOT):
            found.append(target)
    return found


def test_the_checks_catch_what_they_look_for(tmp_path):
    page = ROOT / "benchmarks" / "x.md"
    assert outside_paths(page, "see (`../shared/PAPER.md`) and [it](../../elsewhere.md)") == [
        "../shared/PAPER.md",
        "../../elsewhere.md",
    ]
    assert outside_paths(ROOT / "docs" / "guides" / "x.md", "[ok](../reference/api.md), `benchmarks/peers.md`") == []
    for text in ("Goals (issue 17)", "Issue 16's goal", "see #12", "issues 3 and 4"):
        assert ISSUE.search(text), text
    for text in ("[anchor](#scoring)", "x&#39;y", "top-10 #classes", "a URL /x#3"):
        assert not ISSUE.search(text), text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_cites_a_path_outside_the_repository_or_an_issue_number(page):
    text = page.read_text()
    assert outside_paths(page, text) == []
    assert [m.group(0) for m in ISSUE.finditer(text)] == []


def test_the_built_site_has_no_list_broken_by_a_table(tmp_path):
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"},
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    broken = []
    for html in sorted(site.rglob("*.html")):
        for paragraph in re.findall(r"<p>(.*?)</p>", html.read_text(), flags=re.DOTALL):
            if paragraph.lstrip().startswith(("- ", "| ")):
                broken.append(f"{html.relative_to(site)}: {paragraph[:80]!r}")
    assert broken == []
    assert len(list(site.rglob("*.html"))) > 10  # the pages were there to be read
