"""The trend insight: a measure (or the row count) per calendar period of the date column."""

from __future__ import annotations

import math
from typing import Any

from jobcron.workflows.analysis.numbers import fmt, num, pct
from jobcron.workflows.analysis.profile import Summary
from jobcron.workflows.analysis.stats import day_label, granularity, linear_fit, period

MAX_PERIODS = 120  # periods listed in the insight (the most recent ones)


def build(s: Summary, k: int | None) -> tuple[dict[str, Any], float, list[str]] | None:
    """Per-period totals (rows, or an additive measure) or means (prices, scores) over the date column.

    Returns the insight's content, its confidence and the columns it is about; None without a date
    column or with fewer than three full periods.
    """
    d = s.date
    if d is None or not s.days:
        return None
    m = None if k is None else s.measures[k]
    stat = "count" if m is None else ("total" if s.additive[k or 0] else "mean")
    g = granularity(_robust_span(s.days))
    periods: dict[int, dict[str, Any]] = {}
    for day in sorted(s.days):
        start, end, label = period(day, g)
        p = periods.setdefault(
            start, {"label": label, "end": end, "rows": 0, "sum": 0.0, "n": 0, "first": day}
        )
        b = s.days[day]
        p["rows"] += int(b[0])
        if k is not None:
            p["sum"] += b[2 * k + 1]
            p["n"] += int(b[2 * k + 2])
        p["last"] = day
    series = _series(periods, g, stat)
    full = [p for p in series if not p["partial"] and p["value"] is not None]
    if len(full) < 3:
        return None
    index = {p["period"]: i for i, p in enumerate(series)}
    ys = [p["value"] for p in full]
    slope, r2 = linear_fit([index[p["period"]] for p in full], ys)
    mean_y = math.fsum(ys) / len(ys)
    change = pct(ys[-1] - ys[0], abs(ys[0])) if ys[0] else None
    growth = None
    if stat != "mean" and ys[0] > 0 and ys[-1] > 0:
        steps = index[full[-1]["period"]] - index[full[0]["period"]]
        growth = round(100 * ((ys[-1] / ys[0]) ** (1 / steps) - 1), 3)
    span = index[full[-1]["period"]] - index[full[0]["period"]]
    moves = abs(slope) * span >= 0.05 * abs(mean_y) if mean_y else slope != 0
    direction = ("rising" if slope > 0 else "falling") if r2 >= 0.3 and moves else "no clear trend"
    best = max(full, key=lambda p: p["value"])
    worst = min(full, key=lambda p: p["value"])
    what = "rows" if m is None else f"{stat} {m.name}"
    if best["value"] == worst["value"]:
        direction = "flat"  # the same every period: nothing to fit, nothing is best
        text = f"{what} per {g} ({d.name}): flat at {fmt(best['value'])}"
    else:
        text = (
            f"{what} per {g} ({d.name}): {direction}"
            + (
                f", {change:+.1f}% from {full[0]['period']} to {full[-1]['period']}"
                if change is not None
                else ""
            )
            + f"; highest {best['period']} ({fmt(best['value'])}), lowest {worst['period']} ({fmt(worst['value'])})"
        )
    content = {
        "summary": text,
        "date_column": d.name,
        "measure": "rows" if m is None else m.name,
        "statistic": stat,
        "granularity": g,
        "periods": series[-MAX_PERIODS:],
        "first_full_period": full[0]["period"],
        "last_full_period": full[-1]["period"],
        "change_pct": change,
        "average_growth_pct_per_period": growth,
        "slope_per_period": num(slope),
        "r_squared": round(r2, 4),
        "direction": direction,
        "best_period": {"period": best["period"], "value": best["value"]},
        "worst_period": {"period": worst["period"], "value": worst["value"]},
        "partial_periods": [p["period"] for p in series if p["partial"]],
    }
    # how well the stated direction describes the periods: the fit of the line, or its lack of fit
    fit = 1.0 if direction == "flat" else (r2 if direction != "no clear trend" else 1 - r2)
    coverage = d.acc.n / s.rows if s.rows else 0.0
    conf = coverage * len(full) / (len(full) + 2) * fit
    return content, conf, [d.name] + ([m.name] if m else [])


def _series(periods: dict[int, dict[str, Any]], g: str, stat: str) -> list[dict[str, Any]]:
    """Every period from the first to the last (empty ones too), each marked partial or not."""
    starts = sorted(periods)
    # an edge period is partial when the data covers less of it than it covers of a typical period
    spans = sorted((p["last"] - p["first"] + 1) / (p["end"] - s0 + 1) for s0, p in periods.items())
    inner = spans[1:-1] or spans
    typical = 0.9 * inner[len(inner) // 2]
    series, start = [], starts[0]
    while start <= starts[-1]:
        s0, e0, label = period(start, g)
        p = periods.get(s0)
        length = e0 - s0 + 1
        partial = p is not None and (
            (s0 == starts[0] and (e0 - p["first"] + 1) / length < typical)
            or (s0 == starts[-1] and (p["last"] - s0 + 1) / length < typical)
        )
        rows = p["rows"] if p else 0
        if stat == "count":
            value: float | None = float(rows)
        elif stat == "total":
            value = num(p["sum"]) if p else 0.0
        else:
            value = num(p["sum"] / p["n"]) if p and p["n"] else None
        series.append(
            {"period": label, "start": day_label(s0), "rows": rows, "value": value, "partial": partial}
        )
        start = e0 + 1
    return series


def _robust_span(days: dict[int, list[float]]) -> int:
    """Days between the 1st and 99th percentile of rows by date, so a stray year does not set the scale."""
    total = sum(v[0] for v in days.values())
    lo: int | None = None
    seen = 0.0
    for day in sorted(days):
        seen += days[day][0]
        if lo is None and seen >= total * 0.01:
            lo = day
        if seen >= total * 0.99:
            return day - (lo if lo is not None else day)
    return 0
