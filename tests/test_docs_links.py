"""The README and the guides in docs/ hold together: every relative link leads to a file that exists and, with a
#fragment, to a heading of it; each guide opens with a contents list of its sections; the README stays a short
guide. The generated reports (docs/*.md that say "Do not edit by hand.") are checked for their links only."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GENERATED = "Do not edit by hand."
GUIDES = [page for page in PAGES[1:] if GENERATED not in page.read_text()]
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(([^()\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)


def prose(text: str) -> str:
    """``text`` without its fenced code blocks and inline code spans (a link or heading there is no link)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def headings(path: Path) -> list[tuple[int, str]]:
    """(level, #fragment) of each heading of ``path``, as GitHub makes the fragment: lower case, punctuation
    dropped, spaces as hyphens, a repeated heading numbered -1, -2, ..."""
    found: list[tuple[int, str]] = []
    for line in FENCE.sub("", path.read_text()).splitlines():
        heading = re.match(r"(#{1,6}) +(.*?) *#* *$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(2).replace("`", "").lower()).replace(" ", "-")
            taken = {fragment for _, fragment in found}
            number, unique = 0, slug
            while unique in taken:
                number += 1
                unique = f"{slug}-{number}"
            found.append((len(heading.group(1)), unique))
    return found


def anchors(path: Path) -> set[str]:
    return {fragment for _, fragment in headings(path)}


def relative_links(path: Path) -> list[str]:
    return [target for target in LINK.findall(prose(path.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto: are not checked here


def test_the_slugs_are_githubs():
    page = ROOT / "docs" / "serving.md"
    assert {"every-way-in-and-what-guards-it", "the-operator"} <= anchors(page)
    assert "the-atlass-cost" in anchors(ROOT / "docs" / "benchmarks.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        file_part, _, fragment = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif fragment and (destination.suffix != ".md" or fragment not in anchors(destination)):
            broken.append(f"{target}: no heading #{fragment} in {destination.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


@pytest.mark.parametrize("page", GUIDES, ids=lambda page: page.name)
def test_each_guide_opens_with_a_contents_list_of_its_sections(page):
    text = page.read_text()
    assert "\n## Contents\n" in text, f"{page.name} has no contents list"
    contents = text.split("\n## Contents\n", 1)[1].split("\n## ", 1)[0]
    listed = {target.lstrip("#") for target in LINK.findall(contents)}
    sections = {fragment for level, fragment in headings(page) if level == 2 and fragment != "contents"}
    assert sections <= listed, f"{page.name}: sections missing from its contents: {sorted(sections - listed)}"


def test_the_readme_is_a_short_guide_and_no_line_of_a_guide_is_a_wall():
    readme = PAGES[0].read_text().splitlines()
    assert len(readme) <= 300, f"README.md has {len(readme)} lines; move detail into a guide in docs/"
    for page in [PAGES[0], *GUIDES]:
        long = [number for number, line in enumerate(page.read_text().splitlines(), 1) if len(line) > 500]
        assert not long, f"{page.name}: lines over 500 characters: {long}"


def test_the_serving_guide_lists_every_setting_as_the_code_defines_it():
    from cprune_server.settings import settings_table

    assert settings_table() in (ROOT / "docs" / "serving.md").read_text(), (
        "docs/serving.md's Settings table differs from cprune_server.settings.settings_table(): paste its output")
