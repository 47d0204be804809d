"""The Python code shown in README.md and the documentation pages runs as written.

Every fenced block opened with ```` ```python ```` at the start of a line is code to run.
The blocks of one page run in the page's order, in one namespace (a name defined in
one block is there in the next, as in a notebook), in an empty temporary folder (the
current directory; files a block writes land there), with a fresh feature cache
(conftest.py). A page passes when none of its blocks raises; blocks may ``assert``.

Convention, for code that is shown but must not run here (it needs real data, a GPU,
network access, hours): make its first line the comment ``# not run``, or fence it as
```` ```python no-run ````. Prefer the comment: the site's Markdown (mkdocs, Python-Markdown's
fenced_code) does not take an info string of two words as a fence, and renders such a
block as inline text, where GitHub shows both as code. Blocks of other languages
(```` ```bash ````, ```` ```text ````) are never run. Keep a page's runnable blocks small:
the whole page runs wherever the tests marked slow run (docs/api.md, the largest, takes
30-50 s on two CPU cores).

A failure names the page and the block's first line in that page, and the traceback's
line numbers are the page's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(`{3,})\s*([^`\s]*)\s*(.*?)\s*$")  # opening fence: backticks, language, the rest of the info string
NO_RUN = "no-run"
NOT_RUN_COMMENT = "# not run"


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the block's first code line in its page
    code: str
    run: bool


def code_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text, in order; ``run`` is False for the skipped ones."""
    blocks, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        opened = FENCE.match(lines[index])
        index += 1
        if not opened:
            continue
        fence, language, rest = opened.groups()
        start, body = index, []
        while index < len(lines) and not re.match(rf"^{fence}`*\s*$", lines[index]):
            body.append(lines[index])
            index += 1
        index += 1  # the closing fence
        if language.lower() not in ("python", "py"):
            continue
        first = next((line.strip() for line in body if line.strip()), "")
        skipped = NO_RUN in rest.split() or first.lower().startswith(NOT_RUN_COMMENT)
        blocks.append(Block(start + 1, "\n".join(body) + "\n", not skipped))
    return blocks


def _runnable(page: Path) -> list[Block]:
    return [block for block in code_blocks(page.read_text(encoding="utf-8")) if block.run]


RUNNABLE = [page for page in PAGES if _runnable(page)]


def test_the_convention_for_blocks_not_run():
    text = "\n".join(
        [
            "# A page",
            "```python",
            "x = 1",
            "```",
            "```python no-run",
            "raise SystemExit('needs real data')",
            "```",
            "```python",
            "# not run",
            "raise SystemExit('needs a GPU')",
            "```",
            "```bash",
            "cxrssl demo",
            "```",
            "````python",
            "print('```')",
            "````",
        ]
    )
    found = code_blocks(text)
    assert [(block.line, block.run) for block in found] == [(3, True), (6, False), (9, False), (16, True)]
    assert found[0].code == "x = 1\n" and found[-1].code == "print('```')\n"


def test_the_api_page_has_code_to_run():
    """The page this test was written for: if its blocks were no longer found, nothing would be checked."""
    assert len(_runnable(ROOT / "docs" / "api.md")) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE, ids=[str(page.relative_to(ROOT)) for page in RUNNABLE])
def test_the_python_blocks_of_a_page_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")  # figures are written to files, never shown
    name = str(page.relative_to(ROOT))
    namespace = {"__name__": "__main__", "__file__": str(tmp_path / "docs_code.py")}
    for block in _runnable(page):
        # Padded with blank lines so that the traceback's line numbers are those of the page.
        code = compile("\n" * (block.line - 1) + block.code, name, "exec")
        try:
            exec(code, namespace)
        except Exception as error:
            first = block.code.strip().splitlines()[0]
            raise AssertionError(f"{name}, the python block at line {block.line} ({first!r}) raised {type(error).__name__}: {error}") from error
