"""Escaping of user-given strings (error messages, suite descriptions, paths, words) for the formats the
report writes: a Markdown table cell, a line of Markdown text, and HTML text. Names are validated as
identifiers where they enter (`suites.run.config.check_name`); everything else is escaped where it is written."""
from __future__ import annotations

import html
import re

_TAG = re.compile(r"<(?=[A-Za-z/!?])")   # what starts raw HTML in Markdown (a lone "<=" is plain text)
_PIPE = re.compile(r"(?<!\\)\|")         # a column separator not already escaped
_BREAK = re.compile(r"[\r\n\t\v\f\x85\u2028\u2029]+")


def md_inline(text: object) -> str:
    """One line of Markdown text: line breaks become spaces (no heading, list or block can start), and raw
    HTML tags are shown as text."""
    return _TAG.sub("&lt;", _BREAK.sub(" ", str(text)))


def md_cell(text: object) -> str:
    """A Markdown table cell: `md_inline`, and a `|` escaped so the columns stay in place."""
    return _PIPE.sub(r"\\|", md_inline(text))


def html_text(text: object) -> str:
    """Text inside HTML (element content or a quoted attribute)."""
    return html.escape(str(text), quote=True)
