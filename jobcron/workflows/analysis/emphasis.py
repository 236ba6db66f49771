"""Which columns a job's business_description names ("revenue by region"), so insights about them come first."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# words that qualify a measure rather than name it ("total revenue", "revenue_eur")
_QUALIFIERS = frozenset(
    {"total", "amount", "sum", "value", "eur", "usd", "gbp", "pct", "percent", "avg", "num"}
)
# a measure is often asked for by another name than its column's
SYNONYMS = {
    "revenue": ("sale", "turnover", "income", "earning"),
    "sale": ("revenue", "turnover"),
    "profit": ("margin", "earning"),
    "quantity": ("unit", "volume", "qty"),
    "unit": ("quantity", "volume", "qty"),
    "price": ("cost",),
    "customer": ("client", "buyer"),
    "region": ("area", "territory", "market"),
    "country": ("market", "nation"),
    "product": ("item", "sku"),
    "channel": ("source",),
    "date": ("time", "day", "period"),
}
# words that make a column a likely business measure when the description names none, most telling first;
# these add up across rows (a period's revenue is the sum of its orders' revenue)
MEASURE_WORDS = (
    "revenue",
    "sale",
    "mrr",
    "arr",
    "income",
    "profit",
    "amount",
    "total",
    "spend",
    "cost",
    "expense",
    "fee",
    "value",
    "quantity",
    "qty",
    "unit",
    "seat",
    "volume",
    "count",
)
# words of a column whose values do not add up across rows: a period or category gets their mean
INTENSIVE_WORDS = frozenset(
    {"price", "rate", "pct", "percent", "percentage", "ratio", "avg", "average", "mean", "score", "rating"}
    | {"satisfaction", "level", "age", "hour", "day", "minute", "duration", "cover", "margin", "discount"}
)


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _raw_words(text: str) -> list[str]:
    return _WORD.findall(_CAMEL.sub(" ", text).lower())


def words(text: str) -> list[str]:
    """Lower-case singular words of a text or a column name (camelCase and snake_case split)."""
    return [_singular(w) for w in _raw_words(text)]


def additive(column: str) -> bool:
    """True when a column's values add up across rows (revenue, units), False for prices, rates, scores."""
    ws = words(column)
    return any(w in MEASURE_WORDS for w in ws) and not any(w in INTENSIVE_WORDS for w in ws)


@dataclass
class Emphasis:
    """Columns named by the description, in the order the description names them, and why each matched."""

    description: str | None
    named: dict[str, tuple[str, bool]] = field(default_factory=dict)  # column -> (words, via a synonym)

    def rank(self, column: str) -> int:
        """0.. for named columns (in order of mention), a large number otherwise."""
        order = list(self.named)
        return order.index(column) if column in self.named else 10_000

    def reason(self, columns: list[str]) -> str | None:
        """Why insights about these columns are emphasised, or None when the description names none of them."""
        terms = []
        for column in columns:
            hit = self.named.get(column)
            if hit is not None:
                term, synonym = hit
                terms.append(f"'{term}' (read as {column!r})" if synonym else f"'{term}'")
        return f"business_description mentions {', '.join(terms)}" if terms else None


def find(description: str | None, columns: list[str]) -> Emphasis:
    """Match the description's words against column names (whole names, then single-word synonyms)."""
    out = Emphasis(description)
    if not description or not description.strip():
        return out
    raw = _raw_words(description)
    joined = f" {' '.join(_singular(w) for w in raw)} "

    def said(at: int, n: int) -> str:
        # the words as the description spells them ("sales", not "sale")
        first = joined.count(" ", 0, at + 1) - 1
        return " ".join(raw[first : first + n])

    hits: list[tuple[int, str, str, bool]] = []
    for column in columns:
        col = words(column)
        core = [w for w in col if w not in _QUALIFIERS] or col
        if not core:
            continue
        for phrase in (col, core):
            at = joined.find(f" {' '.join(phrase)} ")
            if at >= 0:
                hits.append((at, column, said(at, len(phrase)), False))
                break
        else:
            if len(core) == 1:
                for syn in SYNONYMS.get(core[0], ()):
                    at = joined.find(f" {syn} ")
                    if at >= 0:
                        hits.append((at, column, said(at, 1), True))
                        break
    for _, column, term, synonym in sorted(hits):
        out.named[column] = (term, synonym)
    return out
