"""Links between the pages lead somewhere: the file exists and so does the heading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.pages import PAGES, relative

_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (?P<title>.+)$", re.MULTILINE)


def anchor(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text("utf-8"), flags=re.DOTALL)
    return {anchor(match["title"]) for match in _HEADING.finditer(text)}


def test_anchors_follow_github():
    assert anchor("The `counting` command line") == "the-counting-command-line"
    assert anchor("Labels from anywhere") == "labels-from-anywhere"


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_links_between_pages_resolve(page):
    broken = []
    for match in _LINK.finditer(page.read_text("utf-8")):
        target = match["target"]
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(f"{target}: no heading #{fragment}")
    assert not broken, f"{relative(page)}: " + "; ".join(broken)
