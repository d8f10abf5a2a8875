"""The README and docs/: every relative link resolves to a file (and heading), every page is linked from the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text a reader sees as links: fenced blocks and inline code are not markdown there."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchors(text: str) -> set[str]:
    """GitHub's heading ids: lowercase, punctuation but '-' and '_' dropped, spaces to '-', repeats get -1, -2."""
    seen: dict[str, int] = {}
    ids = set()
    for heading in HEADING.findall(FENCE.sub("", text)):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        ids.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return ids


def broken_links(page: Path) -> list[str]:
    """Each relative link of a markdown page whose file, or heading in that file, does not exist."""
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not a file of this repository
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/a.md").write_text("# A page\n\n## The CPU profile (what `make demo` changes)\n\n## Plots\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/a.md) [ok](docs/a.md#the-cpu-profile-what-make-demo-changes) [web](https://example.org/x)\n"
        "[gone](docs/b.md) [no heading](docs/a.md#plot) `[in code](docs/c.md)`\n"
        "```\n[in a block](docs/d.md)\n```\n"
    )
    assert broken_links(page) == ["docs/b.md: no such file", "docs/a.md#plot: no heading #plot in a.md"]


def test_repeated_headings_get_numbered_anchors_as_on_github():
    assert anchors("## Resume\n\ntext\n\n## Resume\n\n## Did the fine-tune help: compare.json\n") == {
        "resume",
        "resume-1",
        "did-the-fine-tune-help-comparejson",
    }


def test_the_readme_is_a_front_door_that_links_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    linked = {target.partition("#")[0] for target in LINK.findall(prose(readme))}
    assert {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")} <= linked
