"""Small statistics on bounded data: a reservoir sample, quantiles, correlation, a linear fit, calendar periods."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import date
from typing import Any

Z95 = 1.96


class Reservoir:
    """A uniform random sample of at most k items of a stream (Li's Algorithm L), with a fixed seed.

    The caller offers item number `next` only (`if n == r.next: r.put(item)`), so skipped rows cost
    one integer comparison.
    """

    def __init__(self, k: int, seed: int = 20240601) -> None:
        self.k = k
        self.items: list[Any] = []
        self.next = 1
        self._rng = random.Random(seed)
        self._w = 1.0

    def _u(self) -> float:
        return self._rng.random() or 5e-324

    def put(self, item: Any) -> None:
        """Store item number `next` and choose the next one to take."""
        if len(self.items) < self.k:
            self.items.append(item)
            if len(self.items) < self.k:
                self.next += 1
                return
            self._w = math.exp(math.log(self._u()) / self.k)
        else:
            self.items[self._rng.randrange(self.k)] = item
            self._w *= math.exp(math.log(self._u()) / self.k)
        # skip ahead geometrically: how many items pass before the next one is kept
        self.next += math.floor(math.log(self._u()) / math.log(1 - self._w)) + 1


def quantile(sorted_xs: Sequence[float], p: float) -> float:
    """The p-quantile by linear interpolation between order statistics (statistics' 'inclusive' method)."""
    h = (len(sorted_xs) - 1) * p
    lo = math.floor(h)
    if lo + 1 >= len(sorted_xs):
        return sorted_xs[-1]
    return sorted_xs[lo] + (h - lo) * (sorted_xs[lo + 1] - sorted_xs[lo])


def correlation(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's r, or None when there are fewer than three pairs or a column is constant."""
    n = len(xs)
    if n < 3:
        return None
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    syy = math.fsum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def ranks(xs: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(xs)), key=xs.__getitem__)
    out = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for t in range(i, j + 1):
            out[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return out


def correlation_floor(r: float, n: int, *, ranked: bool = False) -> float:
    """The lower end of the 95% confidence interval of |r| (Fisher's z), 0 when it includes 0.

    A rank correlation's z has a wider spread: 1.06 / sqrt(n - 3) (Fieller, Hartley and Pearson).
    """
    if n <= 3:
        return 0.0
    z = math.atanh(min(abs(r), 0.999999))
    return max(0.0, math.tanh(z - Z95 * (1.06 if ranked else 1.0) / math.sqrt(n - 3)))


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope of ys against xs and the fit's R squared."""
    n = len(ys)
    mx, my = math.fsum(xs) / n, math.fsum(ys) / n
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    syy = math.fsum((y - my) ** 2 for y in ys)
    if sxx == 0:
        return 0.0, 0.0
    slope = sxy / sxx
    r2 = 0.0 if syy == 0 else (sxy * sxy) / (sxx * syy)
    return slope, r2


def margin(n: int) -> float:
    """The widest 95% margin of error of a share estimated from n values (0.98 / sqrt(n))."""
    return 1.0 if n <= 0 else min(1.0, Z95 * 0.5 / math.sqrt(n))


# --- calendar periods ---------------------------------------------------------------------------------

GRANULARITIES = ("day", "week", "month", "quarter", "year")


def granularity(span_days: int) -> str:
    """A period length that cuts the span into a readable number of periods (about 6 to 60)."""
    if span_days <= 45:
        return "day"
    if span_days <= 26 * 7:
        return "week"
    if span_days <= 5 * 366:
        return "month"
    if span_days <= 15 * 366:
        return "quarter"
    return "year"


def period(day: int, g: str) -> tuple[int, int, str]:
    """The period of granularity g holding a day: its first and last day (ordinals) and its label."""
    d = date.fromordinal(day)
    if g == "day":
        return day, day, d.isoformat()
    if g == "week":
        start = day - d.weekday()
        year, week, _ = d.isocalendar()
        return start, start + 6, f"{year}-W{week:02d}"
    if g == "month":
        first = date(d.year, d.month, 1)
        nxt = date(d.year + d.month // 12, d.month % 12 + 1, 1)
        return first.toordinal(), nxt.toordinal() - 1, f"{d.year}-{d.month:02d}"
    if g == "quarter":
        q = (d.month - 1) // 3
        first = date(d.year, 3 * q + 1, 1)
        nxt = date(d.year + 1, 1, 1) if q == 3 else date(d.year, 3 * q + 4, 1)
        return first.toordinal(), nxt.toordinal() - 1, f"{d.year}-Q{q + 1}"
    first = date(d.year, 1, 1)
    return first.toordinal(), date(d.year + 1, 1, 1).toordinal() - 1, str(d.year)


def day_label(day: int) -> str:
    """An ISO date for a day ordinal."""
    return date.fromordinal(day).isoformat()
