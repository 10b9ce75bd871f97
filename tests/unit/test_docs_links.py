"""The documentation holds together: relative links resolve, anchors name real headings,
every page is reachable from the README, and the README stays one screen long.

Pure Python: no Spark session is started.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]
README_MAX_LINES = 200

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(?P<title>.*?)\s*#*\s*$")
EXTERNAL = ("http://", "https://", "mailto:")


def docs_pages() -> list[Path]:
    """Every Markdown file the documentation is made of."""
    pages = [REPO / name for name in ("README.md", "CHANGELOG.md", "ROADMAP.md")]
    pages.append(REPO / "bench" / "README.md")
    pages.extend(sorted((REPO / "docs").rglob("*.md")))
    return pages


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked out."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append(INLINE_CODE.sub("", line))
    return lines


def relative_links(page: Path) -> list[str]:
    """Targets of `[text](target)` links that point inside the repository."""
    targets = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        for match in LINK.finditer(line):
            target = match.group("target").strip("<>")
            if not target.startswith(EXTERNAL):
                targets.append(target)
    return targets


def github_slug(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)   # a link in a heading keeps its text
    slug = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return slug.replace(" ", "-")


def heading_anchors(page: Path) -> set[str]:
    """The anchors of every heading of a Markdown file, numbered as GitHub numbers repeats."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if match:
            slug = github_slug(match.group("title"))
            count = seen.get(slug, 0)
            anchors.add(slug if count == 0 else f"{slug}-{count}")
            seen[slug] = count + 1
    return anchors


def resolve(page: Path, target: str) -> tuple[Path, str]:
    """The file or folder a link points to, and its anchor ('' when it has none)."""
    path_part, _, anchor = target.partition("#")
    destination = page if not path_part else (page.parent / unquote(path_part)).resolve()
    return destination, unquote(anchor)


def broken_links(page: Path) -> list[str]:
    problems = []
    for target in relative_links(page):
        destination, anchor = resolve(page, target)
        where = f"{page.relative_to(REPO)}: ({target})"
        if not destination.exists():
            problems.append(f"{where}: no such file or folder")
        elif anchor and destination.suffix == ".md" and anchor not in heading_anchors(destination):
            problems.append(f"{where}: no heading with anchor #{anchor} in {destination.name}")
    return problems


@pytest.mark.parametrize("page", docs_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_in_the_docs_resolves(page):
    assert page.exists(), f"{page.relative_to(REPO)} is missing"
    assert broken_links(page) == []


def test_readme_fits_on_one_screen():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines, the limit is {README_MAX_LINES}"


@pytest.mark.parametrize("page", sorted((REPO / "docs").rglob("*.md")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_docs_page_starts_with_a_title_and_a_one_line_summary(page):
    lines = page.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# "), f"{page.relative_to(REPO)} does not start with an H1"
    summary = next((line for line in lines[1:] if line.strip()), "")
    assert summary and not summary.startswith(("#", "```", "|", "-")), \
        f"{page.relative_to(REPO)} has no summary line under its title"


def test_every_docs_page_is_reachable_from_the_readme():
    reached, frontier = set(), [REPO / "README.md"]
    while frontier:
        page = frontier.pop()
        if page in reached:
            continue
        reached.add(page)
        for target in relative_links(page):
            destination, _ = resolve(page, target)
            if destination.suffix == ".md" and destination.is_file():
                frontier.append(destination)
    unreachable = [str(p.relative_to(REPO)) for p in docs_pages() if p not in reached]
    assert unreachable == []


def test_github_slugs_drop_punctuation_and_keep_hyphens():
    assert github_slug("What `train` does") == "what-train-does"
    assert github_slug("Nights resume; one writer at a time") == "nights-resume-one-writer-at-a-time"
    assert github_slug("A repeated `_id` is merged, not appended") == "a-repeated-_id-is-merged-not-appended"
