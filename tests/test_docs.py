"""The documents: the README stays short, every relative link and anchor resolves, no page
speaks of how the project was built, and bench/RESULTS.md is what its generator writes now."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import results_md

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED = [*PAGES, ROOT / "bench" / "RESULTS.md"]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose(path: Path) -> str:
    """The page without its code: fenced blocks and inline code spans."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", path.read_text()))


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation other than '-' and '_' dropped, spaces
    to '-', and '-1', '-2', ... on repeats."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", path.read_text()), re.M):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("page", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page: Path):
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_speak_of_the_project_only(page: Path):
    found = re.findall(r"session|issue's notes|commit [0-9a-f]{7}", page.read_text(), re.I)
    assert not found, f"{page.name}: {found}"


def test_results_page_is_what_its_generator_writes():
    assert results_md.OUT.read_text() == results_md.render(), (
        "bench/RESULTS.md is out of date: run python -m bench.results_md"
    )


def test_anchor_rules():
    page = ROOT / "docs" / "sweeps.md"
    assert {"the-sweep-report", "a-fixed-3-minute-cpu-budget-the-222-grid"} <= anchors(page)
    assert "parallel-cluster-and-search" in anchors(page)
