"""Numbers as insights show them: finite, 10 significant digits, readable in a sentence."""

from __future__ import annotations

import math


def num(x: float | None) -> float | None:
    """A finite float kept to 10 significant digits (JSON has no NaN), or None."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.10g}")


def fmt(x: float) -> str:
    """A number for a sentence: 1,234.5 or 12.3M."""
    if abs(x) >= 1e7:
        return f"{x / 1e6:,.1f}M"
    if float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:,.2f}"


def pct(part: float, whole: float) -> float | None:
    """part as a percentage of whole, two decimals."""
    return None if not whole else round(100.0 * part / whole, 2)
