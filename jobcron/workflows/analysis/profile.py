"""One pass over a table's rows: per-column accumulators plus the cross-column state (sample, groups, days).

Memory does not grow with the number of rows: the first PLAN_ROWS rows are buffered to infer the column
types, then every row is folded into fixed-size state (see docs/analysis.md, "Memory").
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobcron.errors import InvalidJob
from jobcron.workflows.analysis.accumulators import Accumulator, Categorical, Numeric, accumulator
from jobcron.workflows.analysis.columns import Plan, infer, is_missing
from jobcron.workflows.analysis.emphasis import MEASURE_WORDS, Emphasis, additive, find, words
from jobcron.workflows.analysis.readers import Table
from jobcron.workflows.analysis.stats import Reservoir

PLAN_ROWS = 1_000  # rows buffered to infer column types
SAMPLE_ROWS = 10_000  # uniform row sample for quantiles, outliers and correlations
MAX_COLUMNS = 200  # columns past this are counted, not analysed
MAX_SAMPLED = 50  # numeric columns kept in the row sample
MAX_GROUPS = 5  # categorical columns broken down by the measures
MAX_MEASURES = 2
GROUP_CAP = 1_000  # categories per breakdown
GROUPABLE = 200  # distinct values in the first rows above which a column is not broken down
MAX_DAYS = 50_000  # distinct days in the trend (137 years)
EXTREMES = 5  # most extreme values kept per numeric column, with their rows
LATE_SAMPLE = 200  # values a late column (a new JSON key) buffers before its type is inferred
BATCH = 2_048  # rows folded at once, column by column


class Late:
    """A column first seen after planning (a new JSON key): typed from its own first values."""

    def __init__(self, name: str, missing_before: int) -> None:
        self.name = name
        self.values: list[Any] = []
        self.missing_before = missing_before
        self.plan: Plan | None = None
        self.acc: Accumulator | None = None

    def add(self, v: Any) -> None:
        """Take one value (buffered until the type is known)."""
        if self.acc is not None:
            self.acc.add(v)
        elif is_missing(v):
            self.missing_before += 1
        else:
            self.values.append(v)
            if len(self.values) >= LATE_SAMPLE:
                self.settle()

    def add_many(self, values: Sequence[Any]) -> list[None]:
        """Take a batch of values; a late column takes no part in cross-column statistics."""
        if self.acc is not None:
            self.acc.add_many(values)
        else:
            for v in values:
                self.add(v)
        return [None] * len(values)

    def settle(self) -> None:
        """Infer the type from the buffered values and replay them."""
        if self.acc is None:
            self.plan = infer(self.name, self.values)
            self.acc = accumulator(self.plan)
            self.acc.missing += self.missing_before
            for v in self.values:
                self.acc.add(v)
            self.values = []


@dataclass
class Column:
    """One analysed column."""

    name: str
    index: int
    plan: Plan
    acc: Accumulator
    late: bool = False


@dataclass
class Summary:
    """Everything the pass learned, for the insight builders."""

    rows: int
    columns: list[Column]
    skipped_columns: int
    measures: list[Column]
    additive: list[bool]  # per measure: values add up (totals) or not (means)
    date: Column | None
    groups: list[Column]
    sampled: list[Column]
    sample: list[tuple[float | None, ...]]
    extremes: dict[
        str, tuple[list[tuple[float, int, dict[str, Any]]], list[tuple[float, int, dict[str, Any]]]]
    ]
    group_sums: dict[str, dict[str, list[float]]]  # column -> value -> [sum, count] per measure
    days: dict[int, list[float]]  # day -> [rows, sum, count per measure]
    days_dropped: int
    notes: list[str] = field(default_factory=list)


class Profile:
    """Folds rows into bounded state; `run()` consumes the table, `summary()` reports."""

    def __init__(
        self, table: Table, description: str | None, max_rows: int, check: Callable[[], None] = lambda: None
    ) -> None:
        self.table = table
        self.description = description
        self.emphasis = Emphasis(description)
        self.max_rows = max_rows
        self.check = check
        self.rows = 0
        self.buffer: bool | None = True  # until the column types are known
        self.folded = 0
        self.columns: list[Column] = []
        self.late: list[Late] = []
        self.adders: list[Callable[[Sequence[Any]], Sequence[Any]]] = []
        self.width = 0
        self.reservoir = Reservoir(SAMPLE_ROWS)
        self.measures: list[Column] = []
        self.additive: list[bool] = []
        self.date: Column | None = None
        self.groups: list[Column] = []
        self.sampled: list[Column] = []
        self.group_sums: dict[str, dict[str, list[float]]] = {}
        self.days: dict[int, list[float]] = {}
        self.days_dropped = 0
        self.tops: list[list[tuple[float, int, dict[str, Any]]]] = []
        self.bottoms: list[list[tuple[float, int, dict[str, Any]]]] = []

    def run(self) -> None:
        """Read every row once, a batch at a time."""
        rows = self.table.rows
        while True:
            batch = list(itertools.islice(rows, PLAN_ROWS if self.buffer is not None else BATCH))
            if not batch:
                break
            self.rows += len(batch)
            if self.rows > self.max_rows:
                raise InvalidJob(
                    f"analysis: the file has more than {self.max_rows} rows "
                    "(job_processing.analysis_max_rows); split it or raise the limit"
                )
            if self.buffer is not None:
                self._plan(batch)
            else:
                self._fold(batch)
            self.check()
        if self.buffer is not None:
            self._plan([])
        for late in self.late:
            late.settle()

    # --- planning --------------------------------------------------------------------------------------

    def _plan(self, buffered: list[list[Any]]) -> None:
        self.buffer = None
        names = self.table.columns[:MAX_COLUMNS]
        self.emphasis = find(self.description, names)  # JSON names its columns only as records arrive
        for i, name in enumerate(names):
            values = [r[i] for r in buffered if i < len(r) and not is_missing(r[i])]
            plan = infer(name, values)
            self.columns.append(Column(name, i, plan, accumulator(plan)))
        self.width = len(names)
        self.adders = [c.acc.add_many for c in self.columns]
        self._choose(buffered)
        for at in range(0, len(buffered), BATCH):
            self._fold(buffered[at : at + BATCH])

    def _choose(self, buffered: list[list[Any]]) -> None:
        """Pick the measures, the date column, the breakdowns and the sampled columns, named ones first."""
        rank = self.emphasis.rank
        numeric = sorted(
            (c for c in self.columns if c.plan.kind == "numeric"), key=lambda c: (rank(c.name), c.index)
        )

        def money(c: Column) -> tuple[int, int]:
            # additive business measures first (revenue before units), then any other numeric column
            hits = [MEASURE_WORDS.index(w) for w in words(c.name) if w in MEASURE_WORDS]
            return (0, min(hits)) if hits and additive(c.name) else (1, 0)

        self.measures = sorted(numeric, key=lambda c: (rank(c.name), money(c), c.index))[:MAX_MEASURES]
        self.additive = [additive(m.name) for m in self.measures]
        dates = sorted(
            (c for c in self.columns if c.plan.kind == "date"), key=lambda c: (rank(c.name), c.index)
        )
        self.date = dates[0] if dates else None
        groupable = []
        for c in self.columns:
            if c.plan.kind in ("categorical", "boolean"):
                distinct = {str(r[c.index]) for r in buffered if c.index < len(r)}
                if len(distinct) <= GROUPABLE:
                    groupable.append(c)
        self.groups = sorted(groupable, key=lambda c: (rank(c.name), c.index))[:MAX_GROUPS]
        self.group_sums = {c.name: {} for c in self.groups}
        self.sampled = numeric[:MAX_SAMPLED]
        self.tops = [[] for _ in self.sampled]
        self.bottoms = [[] for _ in self.sampled]

    # --- the hot loop ----------------------------------------------------------------------------------

    def _fold(self, batch: list[list[Any]]) -> None:
        """Fold a batch of rows into the state, column by column."""
        first = self.folded + 1  # row number of batch[0]
        self.folded += len(batch)
        width = max(map(len, batch))
        if width > MAX_COLUMNS:
            batch = [r[:MAX_COLUMNS] for r in batch]
            width = MAX_COLUMNS
        if width > self.width:
            self._grow(first, width)
        if min(map(len, batch)) < width:  # JSON records without the later keys
            batch = [r + [None] * (width - len(r)) if len(r) < width else r for r in batch]
        cols = list(zip(*batch, strict=True))
        vals = [add_many(cols[i]) for i, add_many in enumerate(self.adders)]
        sampled = [vals[c.index] for c in self.sampled]
        if sampled:
            end = first + len(batch)
            while self.reservoir.next < end:
                i = self.reservoir.next - first
                self.reservoir.put(tuple([xs[i] for xs in sampled]))
        for j, xs in enumerate(sampled):
            self._extremes(j, xs, first, batch)
        measures = [vals[m.index] for m in self.measures]
        for g in self.groups:
            sums = self.group_sums[g.name]
            for k, xs in enumerate(measures):
                self._sum_by(sums, vals[g.index], xs, k)
        if self.date is not None:
            self._by_day(vals[self.date.index], measures)

    def _extremes(self, j: int, xs: Sequence[float | None], first: int, batch: list[list[Any]]) -> None:
        present: list[float] = [x for x in xs if x is not None]
        if not present:
            return
        top, bottom = self.tops[j], self.bottoms[j]
        # most batches hold no new extreme: one max() and one min() settle that
        if len(top) < EXTREMES or max(present) > top[0][0]:
            for i, x in enumerate(xs):
                if x is not None and (len(top) < EXTREMES or x > top[0][0]):
                    self._keep(top, x, first + i, batch[i])
        if len(bottom) < EXTREMES or -min(present) > bottom[0][0]:
            for i, x in enumerate(xs):
                if x is not None and (len(bottom) < EXTREMES or -x > bottom[0][0]):
                    self._keep(bottom, -x, first + i, batch[i])

    def _sum_by(
        self,
        sums: dict[Any, list[float]],
        keys: Sequence[Any],
        xs: Sequence[Any],
        k: int,
        cap: int = GROUP_CAP,
    ) -> None:
        """Add a batch of one measure into its per-category [sum, count]."""
        part: defaultdict[Any, float] = defaultdict(float)
        if None in keys or None in xs:
            pairs = [(key, x) for key, x in zip(keys, xs, strict=True) if key is not None and x is not None]
            for key, x in pairs:
                part[key] += x
            counts = Counter(key for key, _ in pairs)
        else:
            for key, x in zip(keys, xs, strict=True):
                part[key] += x
            counts = Counter(keys)
        width = 2 * len(self.measures)
        for key, total in part.items():
            entry = sums.get(key)
            if entry is None:
                if len(sums) >= cap:
                    continue
                entry = sums[key] = [0.0] * width
            entry[2 * k] += total
            entry[2 * k + 1] += counts[key]

    def _by_day(self, days: Sequence[Any], measures: list[Sequence[Any]]) -> None:
        """Add a batch to the per-day [rows, sum, count per measure]."""
        width = 1 + 2 * len(self.measures)
        buckets = self.days
        for day, n in Counter(days).items():
            if day is None:
                continue
            bucket = buckets.get(day)
            if bucket is None:
                if len(buckets) >= MAX_DAYS:
                    self.days_dropped += n
                    continue
                bucket = buckets[day] = [0.0] * width
            bucket[0] += n
        sums: dict[Any, list[float]] = {}
        for k, xs in enumerate(measures):
            self._sum_by(sums, days, xs, k, cap=len(days))
        for day, entry in sums.items():
            bucket = buckets.get(day)
            if bucket is not None:
                for i, v in enumerate(entry):
                    bucket[1 + i] += v

    def _keep(
        self, heap: list[tuple[float, int, dict[str, Any]]], key: float, n: int, row: list[Any]
    ) -> None:
        where: dict[str, Any] = {"row": n}
        for c in (self.date, *self.groups[:1]):
            if c is not None and row[c.index] is not None:
                where[c.name] = str(row[c.index])[:60]
        if len(heap) < EXTREMES:
            heapq.heappush(heap, (key, n, where))
        else:
            heapq.heappushpop(heap, (key, n, where))

    def _grow(self, first: int, width: int) -> None:
        for i in range(self.width, min(width, MAX_COLUMNS)):
            late = Late(self.table.columns[i], first - 1)
            self.late.append(late)
            self.adders.append(late.add_many)
        self.width = min(width, MAX_COLUMNS)

    # --- results ---------------------------------------------------------------------------------------

    def summary(self) -> Summary:
        """What the pass found; late columns join the column list with their own inferred types."""
        columns = list(self.columns)
        for late in self.late:
            assert late.plan is not None and late.acc is not None
            columns.append(Column(late.name, len(columns), late.plan, late.acc, late=True))
        extremes = {
            c.name: (
                sorted(self.tops[j], reverse=True),
                sorted([(-k, n, w) for k, n, w in self.bottoms[j]]),
            )
            for j, c in enumerate(self.sampled)
        }
        notes = []
        skipped = max(0, len(self.table.columns) - MAX_COLUMNS)
        if skipped:
            notes.append(f"only the first {MAX_COLUMNS} columns were analysed; {skipped} more were not")
        if self.days_dropped:
            notes.append(f"{self.days_dropped} rows fell on days past the {MAX_DAYS}-day limit of the trend")
        if self.late:
            notes.append(
                f"{len(self.late)} column(s) first appeared after row {PLAN_ROWS}: summarised, "
                "but left out of breakdowns, trends and correlations"
            )
        return Summary(
            rows=self.rows,
            columns=columns,
            skipped_columns=skipped,
            measures=self.measures,
            additive=self.additive,
            date=self.date,
            groups=self.groups,
            sampled=self.sampled,
            sample=self.reservoir.items,
            extremes=extremes,
            group_sums=self.group_sums,
            days=self.days,
            days_dropped=self.days_dropped,
            notes=notes,
        )


__all__ = ["Categorical", "Column", "Numeric", "Profile", "Summary"]
