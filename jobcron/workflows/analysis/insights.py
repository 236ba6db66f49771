"""Turn a pass's Summary into Insight rows, each with a readable `summary` and a documented confidence score."""

from __future__ import annotations

import math
from typing import Any

from jobcron.workflows.analysis import trend
from jobcron.workflows.analysis.accumulators import CATEGORY_CAP, Categorical, Dates, Numeric, Text
from jobcron.workflows.analysis.emphasis import Emphasis
from jobcron.workflows.analysis.numbers import fmt, num, pct
from jobcron.workflows.analysis.profile import SAMPLE_ROWS, Column, Summary
from jobcron.workflows.analysis.stats import (
    correlation,
    correlation_floor,
    day_label,
    margin,
    quantile,
    ranks,
)
from jobcron.workflows.base import Insight

TOP_N = 10
MAX_NUMERIC = 20
MAX_CATEGORICAL = 10
MAX_CORRELATIONS = 10
STRONG_R = 0.7
FAR_OUT = 3.0  # Tukey's "far out" fences: Q1 - 3 IQR, Q3 + 3 IQR
_ORDER = ("dataset_overview", "trend", "top_categories", "numeric_summary", "correlation", "outliers")


def score(x: float) -> float:
    """A confidence in 0..1."""
    return max(0.0, min(1.0, x))


class Builder:
    """Builds the insights of one file."""

    def __init__(self, s: Summary, emphasis: Emphasis, source: dict[str, Any]) -> None:
        self.s = s
        self.emphasis = emphasis
        self.source = source
        self.sample_exact = s.rows <= SAMPLE_ROWS
        self.out: list[tuple[tuple[int, int, int], Insight]] = []

    def build(self) -> list[Insight]:
        """All insights, the overview first, then what the description names, then by kind."""
        self.overview()
        numeric = [c for c in self.s.columns if isinstance(c.acc, Numeric) and c.plan.kind == "numeric"]
        for c in sorted(numeric, key=self._rank)[:MAX_NUMERIC]:
            self.numeric_summary(c)
            self.outliers(c)
        categorical = [
            c
            for c in self.s.columns
            if isinstance(c.acc, Categorical) and c.plan.kind in ("categorical", "boolean")
        ]
        for c in sorted(categorical, key=self._rank)[:MAX_CATEGORICAL]:
            self.top_categories(c)
        for k in range(len(self.s.measures)):
            self.trend(k)
        self.trend(None)
        self.correlations()
        self.out.sort(key=lambda item: item[0])
        return [insight for _, insight in self.out]

    def _rank(self, c: Column) -> tuple[int, int]:
        return self.emphasis.rank(c.name), c.index

    def _emit(self, kind: str, content: dict[str, Any], confidence: float, columns: list[str]) -> None:
        reason = self.emphasis.reason(columns)
        if reason:
            content["emphasis"] = reason
        ranks = [self.emphasis.rank(c) for c in columns] or [10_000]
        key = (0 if kind == "dataset_overview" else 1, min(ranks), _ORDER.index(kind))
        self.out.append((key, Insight(kind, content, round(score(confidence), 4))))

    def coverage(self, c: Column) -> float:
        """Share of all rows where the column holds a usable value."""
        return c.acc.n / self.s.rows if self.s.rows else 0.0

    def sample_values(self, c: Column) -> list[float]:
        """The column's values in the row sample (all of them when the file has at most SAMPLE_ROWS rows)."""
        if c not in self.s.sampled:
            return []
        j = self.s.sampled.index(c)
        return sorted(x for row in self.s.sample if (x := row[j]) is not None)

    # --- each insight -------------------------------------------------------------------------------------

    def overview(self) -> None:
        s = self.s
        details, fit_n, fit_total = [], 0, 0
        kinds: dict[str, int] = {}
        for c in s.columns:
            acc = c.acc
            kinds[c.plan.kind] = kinds.get(c.plan.kind, 0) + 1
            d: dict[str, Any] = {
                "name": c.name,
                "type": c.plan.kind,
                "missing": acc.missing,
                "missing_pct": pct(acc.missing, s.rows),
                "invalid": acc.invalid,
            }
            if isinstance(acc, Categorical | Text):
                d["distinct"] = acc.distinct
                if acc.distinct is None:
                    d["distinct_note"] = f"more than {CATEGORY_CAP}"
            if isinstance(acc, Text) and acc.n:
                d["mean_length"] = round(acc.total_chars / acc.n, 1)
            if isinstance(acc, Numeric) and acc.clean is not None:
                d["number_format"] = c.plan.clean
            if isinstance(acc, Dates):
                d["date_format"] = c.plan.date_format
                if acc.n:
                    d["first"], d["last"] = day_label(acc.lo), day_label(acc.hi)
            details.append(d)
            fit_n += acc.n
            fit_total += acc.n + acc.invalid
        type_text = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
        content = {
            "summary": f"{s.rows:,} rows x {len(s.columns)} columns ({type_text}); "
            f"read as {self.source['format'].upper()}, {self.source['encoding']}",
            "rows": s.rows,
            "columns": len(s.columns),
            **self.source,
            "column_details": details,
            "missing_cells": sum(c.acc.missing for c in s.columns),
            "notes": s.notes,
        }
        # how well the inferred types fit: values that conform / values present
        self._emit("dataset_overview", content, fit_n / fit_total if fit_total else 0.0, [])

    def numeric_summary(self, c: Column) -> None:
        acc = c.acc
        assert isinstance(acc, Numeric)
        if not acc.n:
            return
        values = self.sample_values(c)
        q = [num(quantile(values, p)) for p in (0.25, 0.5, 0.75)] if values else [None, None, None]
        exact = self.sample_exact and len(values) == acc.n
        content = {
            "summary": f"{c.name}: mean {fmt(acc.mean)}"
            + (f" (sd {fmt(acc.stdev)})" if acc.stdev is not None else "")
            + (f", median {fmt(q[1])}" if q[1] is not None else "")
            + f", range {fmt(acc.lo)} to {fmt(acc.hi)}, total {fmt(acc.total)} over {acc.n:,} values",
            "column": c.name,
            "count": acc.n,
            "missing": acc.missing,
            "invalid": acc.invalid,
            "sum": num(acc.total),
            "mean": num(acc.mean),
            "std": num(acc.stdev),
            "min": num(acc.lo),
            "q1": q[0],
            "median": q[1],
            "q3": q[2],
            "max": num(acc.hi),
            "integer_valued": acc.integer,
            "quartiles": "exact"
            if exact
            else (f"estimated from a uniform sample of {len(values):,} values" if values else "not computed"),
        }
        n_behind = acc.n if exact else len(values) or acc.n
        self._emit("numeric_summary", content, self.coverage(c) * (1 - margin(n_behind)), [c.name])

    def outliers(self, c: Column) -> None:
        acc = c.acc
        assert isinstance(acc, Numeric)
        values = self.sample_values(c)
        if len(values) < 8:
            return
        q1, q3 = quantile(values, 0.25), quantile(values, 0.75)
        iqr = q3 - q1
        if iqr <= 0:
            return  # most values are equal: every other value would look like an outlier
        lo, hi = q1 - FAR_OUT * iqr, q3 + FAR_OUT * iqr
        beyond = sum(1 for x in values if x < lo or x > hi)
        if not beyond:
            return
        exact = self.sample_exact and len(values) == acc.n
        count = beyond if exact else round(beyond / len(values) * acc.n)
        top, bottom = self.s.extremes.get(c.name, ([], []))
        sd = acc.stdev or 0.0

        def listed(items: list[tuple[float, int, dict[str, Any]]], keep: Any) -> list[dict[str, Any]]:
            return [
                {"value": num(x), "z_score": num((x - acc.mean) / sd) if sd else None, **where}
                for x, _, where in items
                if keep(x)
            ]

        high = listed(top, lambda x: x > hi)
        low = listed(bottom, lambda x: x < lo)
        worst = max(high + low, key=lambda o: abs(o["z_score"] or 0), default=None)
        content = {
            "summary": f"{c.name}: {count:,} value(s) far outside the usual range "
            f"({fmt(lo)} to {fmt(hi)})"
            + (f"; the most extreme is {fmt(worst['value'])} on row {worst['row']}" if worst else ""),
            "column": c.name,
            "method": f"Tukey far-out fences: below Q1 - {FAR_OUT:g} IQR or above Q3 + {FAR_OUT:g} IQR",
            "lower_fence": num(lo),
            "upper_fence": num(hi),
            "count": count,
            "count_exact": exact,
            "share_pct": pct(count, acc.n),
            "high": high,
            "low": low,
        }
        self._emit("outliers", content, self.coverage(c) * (1 - margin(len(values))), [c.name])

    def top_categories(self, c: Column) -> None:
        acc = c.acc
        assert isinstance(acc, Categorical)
        if not acc.n:
            return
        ranked = sorted(acc.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N]
        sums = self.s.group_sums.get(c.name, {})
        measures = list(enumerate(self.s.measures)) if c.name in self.s.group_sums else []
        whole = [math.fsum(e[2 * k] for e in sums.values()) for k, _ in measures]
        top = []
        for value, count in ranked:
            item: dict[str, Any] = {"value": value, "rows": count, "share_pct": pct(count, acc.n)}
            e = sums.get(value)
            for k, m in measures:
                if self.s.additive[k]:
                    item[f"{m.name}_total"] = num(e[2 * k]) if e else None
                    item[f"{m.name}_share_pct"] = pct(e[2 * k], whole[k]) if e else None
                else:
                    item[f"{m.name}_mean"] = num(e[2 * k] / e[2 * k + 1]) if e and e[2 * k + 1] else None
            top.append(item)
        lead, aside = top[0], ""
        if measures:
            m0 = measures[0][1].name
            if self.s.additive[0] and lead.get(f"{m0}_share_pct") is not None:
                aside = f" ({lead[f'{m0}_share_pct']}% of {m0})"
            elif lead.get(f"{m0}_mean") is not None:
                aside = f" (mean {m0} {fmt(lead[f'{m0}_mean'])})"
        shown = sum(i["rows"] for i in top)
        distinct = acc.distinct
        content = {
            "summary": f"{c.name}: {lead['value']!r} leads with {lead['share_pct']}% of rows{aside}"
            + (
                f"; the top {len(top)} of {distinct} hold {pct(shown, acc.n)}%"
                if distinct and distinct > len(top)
                else ""
            ),
            "column": c.name,
            "distinct": distinct,
            "values_counted": acc.n,
            "top": top,
            "other_rows_pct": pct(acc.n - shown, acc.n),
            "measures": {m.name: "total" if self.s.additive[k] else "mean" for k, m in measures},
            "counts": "exact"
            if not acc.pruned
            else f"approximate (each count may be low by up to {acc.error})",
        }
        conf = self.coverage(c) * (1 - margin(acc.n)) * (1 - acc.error / acc.n)
        named = [c.name] + ([m.name for _, m in measures] if self.emphasis.rank(c.name) < 10_000 else [])
        self._emit("top_categories", content, conf, named)

    def trend(self, k: int | None) -> None:
        """Per-period values over the date column: measure k (total or mean), or row counts when k is None."""
        found = trend.build(self.s, k)
        if found is not None:
            content, confidence, columns = found
            self._emit("trend", content, confidence, columns)

    def correlations(self) -> None:
        """Pairs of numeric columns whose Pearson or Spearman (rank) correlation is at least STRONG_R."""
        cols = self.s.sampled
        columns: list[list[Any]] = [[row[j] for row in self.s.sample] for j in range(len(cols))]
        complete = [None not in v for v in columns]
        cached: dict[int, list[float]] = {}

        def ranks_of(j: int) -> list[float]:
            if j not in cached:
                cached[j] = ranks(columns[j])  # complete columns are ranked once for all their pairs
            return cached[j]

        found = []
        for a in range(len(cols)):
            for b in range(a + 1, len(cols)):
                if complete[a] and complete[b]:
                    xs, ys = columns[a], columns[b]
                    ra, rb = ranks_of(a), ranks_of(b)
                else:
                    kept = [
                        (x, y)
                        for x, y in zip(columns[a], columns[b], strict=True)
                        if x is not None and y is not None
                    ]
                    xs, ys = [p[0] for p in kept], [p[1] for p in kept]
                    ra, rb = ranks(xs), ranks(ys)
                r = correlation(xs, ys)
                if r is None:
                    continue
                rho = correlation(ra, rb) or 0.0
                if max(abs(r), abs(rho)) >= STRONG_R:
                    found.append((cols[a], cols[b], r, rho, len(xs)))
        found.sort(
            key=lambda f: (
                min(self.emphasis.rank(f[0].name), self.emphasis.rank(f[1].name)),
                -max(abs(f[2]), abs(f[3])),
            )
        )
        for c1, c2, r, rho, n in found[:MAX_CORRELATIONS]:
            ca, cb = sorted((c1, c2), key=lambda c: c.index)  # in file order, whatever the emphasis
            ranked = abs(rho) > abs(r)  # a monotone but curved (or outlier-bent) relation
            lead = rho if ranked else r
            direction = "positive" if lead > 0 else "negative"
            strength = "very strong" if abs(lead) >= 0.9 else "strong"
            verb = "rises" if lead > 0 else "falls"
            name = "rank correlation rho" if ranked else "r"
            content = {
                "summary": f"{cb.name} {verb} with {ca.name} ({name} = {lead:.2f}, {strength} {direction})",
                "columns": [ca.name, cb.name],
                "pearson_r": round(r, 6),
                "spearman_rho": round(rho, 6),
                "measure": "spearman" if ranked else "pearson",
                "direction": direction,
                "strength": strength,
                "pairs": n,
                "exact": self.sample_exact,
            }
            self._emit("correlation", content, correlation_floor(lead, n, ranked=ranked), [ca.name, cb.name])
