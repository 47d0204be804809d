"""Every relative link of README.md and the documentation pages resolves.

GitHub renders these files from the repository, the site (mkdocs.yml) from docs/: a link
must name a file or folder that exists, an anchor a heading of the page it points to,
and a page of docs/ must not leave docs/ (the site would not have the target).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
LINK = re.compile(r"(?<!\!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "code", text)


def _slug(heading: str) -> str:
    """The anchor GitHub and mkdocs' toc give a heading (they agree for these pages)."""
    heading = re.sub(r"`([^`]*)`", r"\1", heading).strip().lower()
    heading = re.sub(r"[^\w\- ]", "", heading)
    return re.sub(r"[ ]+", "-", heading).strip("-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {_slug(match) for match in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.M)}


def _links(page: Path) -> list[str]:
    prose = _prose(page.read_text())
    return LINK.findall(prose) + IMAGE.findall(prose)


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_relative_link_resolves(page):
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
            continue  # a web address: not checked here (CI may be offline)
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file or folder")
            continue
        if page.is_relative_to(DOCS) and not resolved.is_relative_to(DOCS):
            broken.append(f"{target}: leaves docs/, which the site is built from (name the code in plain text)")
        if target.startswith("/"):
            broken.append(f"{target}: absolute; make it relative")
        if anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {resolved.name}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


CODE_PATH = re.compile(r"`((?:src/)?(?:cxrssl|bench|tests)/[\w./-]*)`")


@pytest.mark.parametrize("page", PAGES[:1] + sorted(DOCS.glob("*.md")), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_code_path_named_exists(page):
    """Code is named by its path in plain text (`cxrssl/models.py`, `bench/gpu.sh`): each must exist."""
    missing = []
    for name in sorted(set(CODE_PATH.findall(page.read_text()))):
        path = ROOT / ("src/" + name if name.startswith("cxrssl/") else name)
        if not path.exists():
            missing.append(name)
    assert not missing, f"{page.relative_to(ROOT)} names code that does not exist: {', '.join(missing)}"


def test_the_link_finder_finds_links():
    assert _links(ROOT / "README.md"), "README.md has links to the documentation"
    assert _slug("Does pretraining pay? `cxrssl compare`") == "does-pretraining-pay-cxrssl-compare"
    assert _slug("Per-finding evaluation (multi-label tasks)") == "per-finding-evaluation-multi-label-tasks"


def test_every_page_is_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in sorted(DOCS.glob("*.md")):
        assert re.search(rf":\s*{re.escape(page.name)}\s*$", nav, flags=re.M), f"docs/{page.name} is not in mkdocs.yml's nav"
