"""Untrusted text on a terminal: names, labels, paths and messages that come from files.

Control characters (C0, DEL, C1: escape sequences, newlines) and bidirectional overrides are shown as
escapes (``\\x1b``) instead of reaching the terminal, and rich markup in them is not interpreted.
"""
from __future__ import annotations

import json
import unicodedata

from rich.console import Console
from rich.markup import escape

BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unsafe(ch: str) -> bool:
    return ch in BIDI or unicodedata.category(ch) == "Cc"


def visible(text: object) -> str:
    """``text`` on one inert line: control and bidi characters as escapes."""
    return "".join(ch.encode("unicode_escape").decode("ascii") if _unsafe(ch) else ch for ch in str(text))


def say(console: Console, text: object) -> None:
    """Print a plain line holding untrusted parts (paths, names from run cards) through ``visible``."""
    console.print(visible(text), markup=False, highlight=False)


def safe(text: object) -> str:
    """Untrusted text for a rich markup context (tables, status lines): ``visible`` and markup escaped."""
    return escape(visible(text))


def print_json(console: Console, text: str) -> None:
    """Untrusted JSON, pretty and still valid: markup is not interpreted, and control / bidi characters
    inside strings stay escapes (``\\u009b``) instead of reaching the terminal."""
    from rich.highlighter import JSONHighlighter
    from rich.text import Text

    pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    pretty = "".join(f"\\u{ord(ch):04x}" if _unsafe(ch) and ch != "\n" else ch for ch in pretty)
    console.print(JSONHighlighter()(Text(pretty)), soft_wrap=True)
