"""Streaming per-column accumulators, fed a batch of one column's values at a time.

Each `add_many(values)` folds a batch into bounded state and returns the values parsed and aligned
with the batch (None where missing or invalid), for the cross-column statistics. A batch whose
values are all clean goes through C-level builtins (map, sum, Counter); anything else falls back to
`add`, one value at a time.
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Sequence
from typing import Any

from jobcron.workflows.analysis.columns import CLEANERS, NULLS, NULLS_LOWER, Plan, day_parser, is_missing

MAX_KEY_CHARS = 100  # category values are cut here so a free-text column cannot fill memory
CATEGORY_CAP = 1000  # counters kept per column (exact below this many distinct values)
DATE_CACHE = 20_000  # distinct date strings remembered per column
_MISSING_DAY = -1
_BAD_DAY = 0


class Numeric:
    """Count, sum, mean and variance (shifted sums), min and max of a numeric column."""

    __slots__ = ("clean", "hi", "integer", "invalid", "lo", "missing", "n", "s1", "s2", "shift")

    def __init__(self, clean: str | None) -> None:
        self.clean = CLEANERS[clean] if clean else None
        self.n = self.missing = self.invalid = 0
        self.shift = self.s1 = self.s2 = 0.0
        self.lo = float("inf")
        self.hi = float("-inf")
        self.integer = True

    def add(self, v: Any) -> float | None:
        """Take one value; returns it as a float, or None when missing or not a number."""
        t = type(v)
        if t is float or t is int:
            try:
                x = float(v)
            except OverflowError:  # an integer past the float range
                self.invalid += 1
                return None
        elif t is str:
            if v in NULLS:
                self.missing += 1
                return None
            try:
                x = float(v) if self.clean is None else self.clean(v)
            except ValueError:
                if v.strip().lower() in NULLS_LOWER:
                    self.missing += 1
                else:
                    self.invalid += 1
                return None
        elif v is None:
            self.missing += 1
            return None
        else:
            self.invalid += 1
            return None
        if x - x:  # inf or nan: not a measurement
            self.invalid += 1
            return None
        self._fold([x])
        return x

    def add_many(self, values: Sequence[Any]) -> list[float | None]:
        """Take a batch; the fast path needs every value to be a number or a 'no value' spelling."""
        types = set(map(type, values))
        if types != {str} and not types <= {int, float}:
            return [self.add(v) for v in values]  # JSON with nulls, booleans or mixed types
        present = [v for v in values if v not in NULLS] if str in types else list(values)
        try:
            xs = list(map(self.clean or float, present))
        except (ValueError, OverflowError):
            return [self.add(v) for v in values]
        if xs and not math.isfinite(sum(xs)):
            return [self.add(v) for v in values]  # an inf or nan among them (or an overflowing sum)
        self.missing += len(values) - len(present)
        if xs:
            self._fold(xs)
        if len(xs) == len(values):
            return xs  # type: ignore[return-value]  # list[float] is a list[float | None]
        it = iter(xs)
        return [None if v in NULLS else next(it) for v in values]

    def _fold(self, xs: list[float]) -> None:
        if not self.n:
            self.shift = xs[0]  # summing offsets from the first value keeps the variance accurate
        shift = self.shift
        d = [x - shift for x in xs]
        self.s1 += sum(d)
        self.s2 += sum(map(operator.mul, d, d))
        self.n += len(xs)
        lo, hi = min(xs), max(xs)
        if lo < self.lo:
            self.lo = lo
        if hi > self.hi:
            self.hi = hi
        if self.integer:
            self.integer = all(map(float.is_integer, xs))

    @property
    def mean(self) -> float:
        """The mean (exact up to float rounding)."""
        return self.shift + self.s1 / self.n

    @property
    def total(self) -> float:
        """The sum of the values."""
        return self.shift * self.n + self.s1

    @property
    def stdev(self) -> float | None:
        """The sample standard deviation (n - 1), None below two values."""
        if self.n < 2:
            return None
        var = (self.s2 - self.s1 * self.s1 / self.n) / (self.n - 1)
        return float(max(var, 0.0) ** 0.5)


class Categorical:
    """Value counts, exact up to CATEGORY_CAP distinct values, then Misra-Gries (counts may undercount by `error`)."""

    __slots__ = ("boolean", "cap", "counts", "error", "invalid", "missing", "n", "pruned", "total_chars")

    def __init__(self, *, boolean: bool = False, cap: int = CATEGORY_CAP) -> None:
        self.counts: dict[str, int] = {}
        self.cap = cap
        self.n = self.missing = self.invalid = self.total_chars = self.error = 0
        self.pruned = False
        self.boolean = boolean

    def _key(self, value: Any) -> str | None:
        if type(value) is str:
            if value in NULLS or value.isspace():
                return None
            v: str = value
        elif value is None:
            return None
        else:
            v = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if len(v) > MAX_KEY_CHARS:
            v = v[:MAX_KEY_CHARS]
        return v.strip().lower() if self.boolean else v

    def add(self, value: Any) -> str | None:
        """Take one value; returns its category key, or None when missing."""
        v = self._key(value)
        if v is None:
            self.missing += 1
            return None
        self._merge({v: 1})
        return v

    def add_many(self, values: Sequence[Any]) -> list[str | None]:
        """Take a batch of values; returns their category keys."""
        if self.boolean or set(map(type, values)) != {str} or max(map(len, values)) > MAX_KEY_CHARS:
            keys = [self._key(v) for v in values]
            present = [k for k in keys if k is not None]
            self.missing += len(keys) - len(present)
            self._merge(Counter(present))
            return keys
        batch = Counter(values)
        blank = [k for k in batch if k in NULLS or k.isspace()]
        for k in blank:
            self.missing += batch.pop(k)
        self._merge(batch)
        if not blank:
            return list(values)
        return [None if v in NULLS or v.isspace() else v for v in values]

    def _merge(self, batch: dict[str, int]) -> None:
        counts = self.counts
        for k, c in batch.items():
            counts[k] = counts.get(k, 0) + c
            self.n += c
            self.total_chars += len(k) * c
        if len(counts) > 2 * self.cap:
            self._prune()

    @property
    def distinct(self) -> int | None:
        """Distinct values, None once past the cap (counts are then approximate)."""
        return None if self.pruned else len(self.counts)

    def _prune(self) -> None:
        # subtract the cap-th largest count from every counter: any value more frequent than
        # n / cap survives, and every count is low by at most the total subtracted (`error`)
        cut = sorted(self.counts.values(), reverse=True)[self.cap]
        self.counts = {k: c - cut for k, c in self.counts.items() if c > cut}
        self.error += cut
        self.pruned = True


class Text:
    """A free-text or identifier column: how many values, how long, how many distinct (up to a cap)."""

    __slots__ = ("cap", "invalid", "missing", "n", "seen", "total_chars")

    def __init__(self, cap: int = CATEGORY_CAP) -> None:
        self.cap = cap
        self.seen: set[str] | None = set()  # None once more than `cap` distinct values were seen
        self.n = self.missing = self.invalid = self.total_chars = 0

    def add(self, value: Any) -> None:
        """Take one value."""
        self.add_many([value])

    def add_many(self, values: Sequence[Any]) -> Sequence[Any]:
        """Take a batch of values; text takes no part in cross-column statistics."""
        if set(map(type, values)) == {str}:
            present = [v for v in values if v not in NULLS and not v.isspace()]
        else:
            present = [str(v) for v in values if not is_missing(v)]
        self.missing += len(values) - len(present)
        self.n += len(present)
        self.total_chars += sum(map(len, present))
        if self.seen is not None:
            self.seen.update(v[:MAX_KEY_CHARS] for v in present)
            if len(self.seen) > self.cap:
                self.seen = None  # past the cap, stop remembering (memory stays bounded)
        return values

    @property
    def distinct(self) -> int | None:
        """Distinct values, None when more than the cap."""
        return None if self.seen is None else len(self.seen)


class Dates:
    """Days of a date column: first and last day, and each value's day for the trend."""

    __slots__ = ("cache", "fmt", "hi", "invalid", "lo", "missing", "n", "parse")

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.parse = day_parser(fmt)
        self.cache: dict[Any, int] = {}
        self.n = self.missing = self.invalid = 0
        self.lo = 10**9
        self.hi = 0

    def _day(self, v: Any) -> int:
        """A value's day ordinal, _MISSING_DAY or _BAD_DAY; remembered, since dates repeat a lot."""
        if v is None or (type(v) is str and (v in NULLS or v.strip().lower() in NULLS_LOWER)):
            day = _MISSING_DAY
        elif type(v) is not str:
            day = _BAD_DAY
        else:
            try:
                day = self.parse(v)
            except ValueError:
                day = _BAD_DAY
        if len(self.cache) >= DATE_CACHE:
            self.cache.clear()  # many distinct timestamps: keep the cache bounded
        self.cache[v] = day
        return day

    def add(self, v: Any) -> int | None:
        """Take one value; returns its day ordinal, or None when missing or not a date."""
        return self.add_many([v])[0]

    def add_many(self, values: Sequence[Any]) -> list[int | None]:
        """Take a batch of values; returns their day ordinals."""
        days: list[int | None] = list(map(self.cache.get, values))
        if None in days:
            days = [self._day(v) if d is None else d for v, d in zip(values, days, strict=True)]
        ints: list[int] = days  # type: ignore[assignment]  # no None left
        missing, bad = ints.count(_MISSING_DAY), ints.count(_BAD_DAY)
        if missing or bad:
            self.missing += missing
            self.invalid += bad
            valid = [d for d in ints if d > 0]
            days = [d if d > 0 else None for d in ints]
        else:
            valid = ints
        if valid:
            self.n += len(valid)
            self.lo = min(self.lo, min(valid))
            self.hi = max(self.hi, max(valid))
        return days


Accumulator = Numeric | Categorical | Text | Dates


def accumulator(plan: Plan) -> Accumulator:
    """The accumulator for an inferred column kind."""
    if plan.kind == "numeric":
        return Numeric(plan.clean)
    if plan.kind == "date":
        assert plan.date_format is not None
        return Dates(plan.date_format)
    if plan.kind == "boolean":
        return Categorical(boolean=True)
    if plan.kind in ("text", "identifier"):
        return Text()
    return Categorical()
