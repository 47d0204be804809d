"""Markdown text from user-controlled names: the one escaping every Markdown writer of cxrssl uses.

Backbone and checkpoint names, labels, dataset, task, finding and manifest names come
from the user's files and flags. Written raw into a Markdown table, a ``|`` would add a
column, a newline would end the row, a backtick would open code, and ``<script>`` or
``<img onerror=...>`` would run when the Markdown is rendered to HTML. :func:`md_text`
makes any of them plain text.
"""

from __future__ import annotations

from collections.abc import Iterable

# Order matters: "&" first, so the entities added after it are not escaped twice.
_REPLACEMENTS = (
    ("&", "&amp;"),
    ("<", "&lt;"),
    (">", "&gt;"),
    ("|", "\\|"),
    ("`", "&#96;"),
    ("](", "&#93;("),
    ("\r\n", " "),
    ("\n", " "),
    ("\r", " "),
)  # "](": no link or image from a name; "[95.0–98.0]" stays


class Markdown(str):
    """Text that is Markdown already (written by cxrssl itself, e.g. a ``<br>`` inside a cell): :func:`md_text` keeps it."""


def md_text(value) -> str:
    """``value`` as Markdown text that renders exactly as itself: one line, no markup, no table cell break."""
    if isinstance(value, Markdown):
        return value
    text = str(value)
    for raw, escaped in _REPLACEMENTS:
        text = text.replace(raw, escaped)
    return text


def md_row(cells: Iterable) -> str:
    """One Markdown table row; every cell escaped with :func:`md_text`."""
    return "| " + " | ".join(md_text(cell) for cell in cells) + " |"


def md_header(cells: Iterable) -> str:
    """A Markdown table's header row and its ``|---|`` rule."""
    cells = list(cells)
    return md_row(cells) + "\n|" + "---|" * len(cells)
