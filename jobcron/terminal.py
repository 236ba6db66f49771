"""Text from the database made safe for an operator's terminal: control characters shown, never obeyed.

Rows are written by other applications; a `user_id` holding ESC ] 0 ; ... BEL would retitle the
operator's terminal (even through a pipe into `less -R`), one holding ESC [ 2 J would clear it. Every
human-readable output (the CLI's text and the console log renderer) passes its text through
`printable`; JSON output needs nothing, json.dumps escapes these characters itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# C0 controls, DEL and C1 controls (a lone 0x9b is CSI to many terminals), the Unicode line and
# paragraph separators, and the bidirectional overrides and isolates (they reorder what is read)
_CONTROLS = "\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\n{_CONTROLS}]")
_UNSAFE_BUT_NEWLINE = re.compile(f"[{_CONTROLS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(value: object, *, keep_newlines: bool = False) -> str:
    """The text with every control character written as an escape (ESC as \\x1b, a newline as \\n)."""
    text = value if isinstance(value, str) else str(value)
    return (_UNSAFE_BUT_NEWLINE if keep_newlines else _UNSAFE).sub(_escape, text)


def printable_data(value: Any) -> Any:
    """A copy of JSON-like data (dicts, lists) with every string, keys included, made printable."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, Mapping):
        return {printable_data(k): printable_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable_data(v) for v in value]
    return value
