"""README.md and docs/ stand alone in a fresh clone: every relative link resolves inside the checkout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_point_only_inside_the_checkout(page: Path) -> None:
    text = page.read_text()
    assert "../shared" not in text
    for target in LINK.findall(text):
        if "://" in target:
            continue
        resolved = (page.parent / target).resolve()
        assert resolved.is_relative_to(REPO) and resolved.exists(), f"{page.name}: broken link {target}"
