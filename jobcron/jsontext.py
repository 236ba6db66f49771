"""JSON text from operators, applications and config files, parsed with one rule for refusals."""

from __future__ import annotations

import json
from typing import Any

from jobcron.errors import JsonRefused


def parse_json(text: str) -> Any:
    """json.loads, every refusal a JsonRefused.

    json.loads raises JSONDecodeError for bad syntax, but a plain ValueError for valid syntax it
    still refuses: an integer longer than sys.get_int_max_str_digits() (4,300 digits by default).
    Callers that caught only the first turned the second into a traceback.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonRefused(exc.msg, lineno=exc.lineno, colno=exc.colno, pos=exc.pos) from None
    except ValueError as exc:
        raise JsonRefused(str(exc)) from None
