"""The `analysis` workflow through the daemon on each sample file, checked against an independent computation."""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobcron.config import Config
from jobcron.daemon.worker import Worker
from tests.factories import insert_file, insert_job, job

Conn = psycopg.Connection[dict[str, Any]]
SAMPLES = Path(__file__).resolve().parents[2] / "jobcron" / "data" / "samples"
REL = 1e-8  # the workflow keeps 10 significant digits


@pytest.fixture
def config(make_config: Any) -> Config:
    cfg: Config = make_config(job_processing={"file_root": str(SAMPLES)})
    return cfg


def analyse(conn: Conn, config: Config, path: str, description: str | None = None) -> dict[str, Any]:
    """Run one analysis job through Worker.run_once(); the job row, its insights by type, the file row."""
    file_id = insert_file(conn, path, original_name=Path(path).name)
    job_id = insert_job(conn, job_type="analysis", file_id=file_id, business_description=description)
    assert Worker(config).run_once()
    row = job(conn, job_id)
    assert row["status"] == "completed", row["error_message"]
    found = conn.execute(
        "SELECT insight_type, content, confidence_score, file_id FROM insights WHERE job_id = %s", (job_id,)
    ).fetchall()
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i in found:
        assert 0 <= float(i["confidence_score"]) <= 1
        assert str(i["file_id"]) == file_id
        by_type[i["insight_type"]].append({**i["content"], "confidence": float(i["confidence_score"])})
    file_row = conn.execute("SELECT status FROM files WHERE id = %s", (file_id,)).fetchone()
    assert file_row is not None and file_row["status"] == "analysed"
    return {"job": row, "result": row["result"], "insights": by_type}


def one(insights: dict[str, list[dict[str, Any]]], kind: str, **match: Any) -> dict[str, Any]:
    hits = [i for i in insights[kind] if all(i.get(k) == v for k, v in match.items())]
    assert len(hits) == 1, f"{kind} {match}: {len(hits)} found"
    return hits[0]


def check_numeric(summary: dict[str, Any], values: list[float]) -> None:
    """count, sum, mean, sd, min, max and quartiles against the statistics module."""
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    expected = {
        "count": len(values),
        "sum": math.fsum(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values),
        "min": min(values),
        "max": max(values),
        "q1": q1,
        "median": q2,
        "q3": q3,
    }
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value, rel=REL, abs=1e-9), key
    assert summary["quartiles"] == "exact"


def ranks(xs: list[float]) -> list[float]:
    """Average ranks (ties share), written independently of the workflow's."""
    ordered = sorted(xs)
    first: dict[float, int] = {}
    count: dict[float, int] = defaultdict(int)
    for i, x in enumerate(ordered):
        first.setdefault(x, i)
        count[x] += 1
    return [first[x] + (count[x] + 1) / 2 for x in xs]


# --- sales.csv: CSV with a BOM, CRLF, quoted commas; a date, regions, revenue --------------------------


def read_sales() -> list[dict[str, str]]:
    with (SAMPLES / "sales.csv").open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def test_sales_csv(conn: Conn, config: Config) -> None:
    out = analyse(conn, config, "sales.csv", "Revenue by region, and how sales grow month by month")
    rows, ins, result = read_sales(), out["insights"], out["result"]

    overview = one(ins, "dataset_overview")
    assert overview["rows"] == result["rows"] == len(rows) == 1500
    assert overview["columns"] == 11
    assert (overview["format"], overview["encoding"], overview["bom"]) == ("csv", "utf-8", True)
    assert (overview["delimiter"], overview["header"]) == (",", True)
    details = {d["name"]: d for d in overview["column_details"]}
    assert details["order_id"]["type"] == "identifier"
    assert details["order_date"]["type"] == "date" and details["order_date"]["first"] == min(
        r["order_date"] for r in rows
    )
    assert details["region"]["type"] == "categorical" and details["region"]["distinct"] == 5
    assert details["product"]["distinct"] == len({r["product"] for r in rows})  # "Widget, Small" kept whole
    assert details["customer_rating"]["missing"] == sum(1 for r in rows if r["customer_rating"] == "")
    assert overview["confidence"] == 1.0

    revenue = [float(r["revenue"]) for r in rows]
    check_numeric(one(ins, "numeric_summary", column="revenue"), revenue)
    rating = [float(r["customer_rating"]) for r in rows if r["customer_rating"]]
    summary = one(ins, "numeric_summary", column="customer_rating")
    check_numeric(summary, rating)
    assert summary["missing"] == len(rows) - len(rating)
    # confidence = coverage x (1 - 0.98 / sqrt(n))
    expected = len(rating) / len(rows) * (1 - 1.96 * 0.5 / math.sqrt(len(rating)))
    assert summary["confidence"] == pytest.approx(expected, abs=0.006)

    # the description names revenue and region: revenue is the measure, region's breakdown says so
    assert result["emphasis"]["named_columns"][:2] == ["revenue", "region"]
    assert result["emphasis"]["measures"][0] == "revenue"
    region = one(ins, "top_categories", column="region")
    assert region["emphasis"] == "business_description mentions 'region', 'revenue'"
    by_region: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_region[r["region"]].append(float(r["revenue"]))
    total = math.fsum(revenue)
    assert [t["value"] for t in region["top"]] == sorted(by_region, key=lambda k: -len(by_region[k]))
    for item in region["top"]:
        vals = by_region[item["value"]]
        assert item["rows"] == len(vals)
        assert item["share_pct"] == pytest.approx(100 * len(vals) / len(rows), abs=0.005)
        assert item["revenue_total"] == pytest.approx(math.fsum(vals), rel=REL)
        assert item["revenue_share_pct"] == pytest.approx(100 * math.fsum(vals) / total, abs=0.005)
    assert result["highlights"][1].startswith(("total revenue per month", "region:", "revenue:"))

    # trend: monthly revenue totals, best and worst month, change from the first to the last month
    trend = one(ins, "trend", measure="revenue")
    assert (trend["granularity"], trend["statistic"], trend["date_column"]) == (
        "month",
        "total",
        "order_date",
    )
    months: dict[str, float] = defaultdict(float)
    for r in rows:
        months[r["order_date"][:7]] += float(r["revenue"])
    assert [p["period"] for p in trend["periods"]] == sorted(months)
    for p in trend["periods"]:
        assert p["value"] == pytest.approx(months[p["period"]], rel=REL)
    assert trend["partial_periods"] == []
    assert trend["best_period"]["period"] == max(months, key=months.__getitem__)
    assert trend["worst_period"]["period"] == min(months, key=months.__getitem__)
    first, last = months[min(months)], months[max(months)]
    assert trend["change_pct"] == pytest.approx(100 * (last - first) / first, abs=0.005)
    assert trend["direction"] == "rising"
    assert trend["emphasis"] == "business_description mentions 'revenue'"
    counts = one(ins, "trend", measure="rows")
    assert sum(p["value"] for p in counts["periods"]) == len(rows)

    # outliers: Tukey far-out fences on units; the two bulk orders come first
    units = [float(r["units"]) for r in rows]
    q1, _, q3 = statistics.quantiles(units, n=4, method="inclusive")
    lo, hi = q1 - 3 * (q3 - q1), q3 + 3 * (q3 - q1)
    outliers = one(ins, "outliers", column="units")
    assert outliers["count"] == sum(1 for u in units if u < lo or u > hi) and outliers["count_exact"]
    assert (outliers["lower_fence"], outliers["upper_fence"]) == (pytest.approx(lo), pytest.approx(hi))
    biggest = sorted(range(len(units)), key=lambda i: -units[i])[:2]
    assert [(o["value"], o["row"]) for o in outliers["high"][:2]] == [(units[i], i + 1) for i in biggest]
    assert outliers["high"][0]["order_date"] == rows[biggest[0]]["order_date"]

    # correlations: shipping cost follows units
    shipping = [float(r["shipping_cost"]) for r in rows]
    corr = one(ins, "correlation", columns=["units", "shipping_cost"])
    assert corr["pearson_r"] == pytest.approx(statistics.correlation(units, shipping), abs=1e-6)
    assert corr["spearman_rho"] == pytest.approx(
        statistics.correlation(ranks(units), ranks(shipping)), abs=1e-6
    )
    assert corr["exact"] and corr["confidence"] > 0.9
    assert result["insights"] == sum(len(v) for v in ins.values())


# --- inventory.tsv: Latin-1, tab-separated, decimal commas, day-first dates -------------------------------


def test_inventory_tsv_latin1(conn: Conn, config: Config) -> None:
    out = analyse(conn, config, "inventory.tsv")
    ins = out["insights"]
    with (SAMPLES / "inventory.tsv").open(encoding="latin-1", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    overview = one(ins, "dataset_overview")
    assert (overview["format"], overview["delimiter"], overview["encoding"]) == ("tsv", "\t", "latin-1")
    assert "not valid UTF-8" in overview["encoding_note"] and out["result"]["encoding"] == "latin-1"
    details = {d["name"]: d for d in overview["column_details"]}
    assert details["snapshot_date"]["date_format"] == "%d/%m/%Y"
    assert details["stock_value_eur"]["number_format"] == "decimal_comma"
    warehouses = one(ins, "top_categories", column="warehouse")
    assert {t["value"] for t in warehouses["top"]} == {r["warehouse"] for r in rows} >= {"Zürich", "Besançon"}

    value = [float(r["stock_value_eur"].replace(".", "").replace(",", ".")) for r in rows]
    check_numeric(one(ins, "numeric_summary", column="stock_value_eur"), value)
    weeks: dict[date, float] = defaultdict(float)
    for r in rows:
        weeks[datetime.strptime(r["snapshot_date"], "%d/%m/%Y").date()] += float(r["stock_units"])
    trend = one(ins, "trend", measure="stock_units")
    assert trend["granularity"] == "week" and trend["direction"] == "falling"
    assert [p["value"] for p in trend["periods"]] == pytest.approx([weeks[d] for d in sorted(weeks)])
    assert trend["best_period"]["value"] == pytest.approx(max(weeks.values()))


# --- subscriptions.json: an array of objects with a nested object and booleans ---------------------------


def test_subscriptions_json(conn: Conn, config: Config) -> None:
    out = analyse(conn, config, "subscriptions.json", "MRR by plan")
    ins = out["insights"]
    records = json.loads((SAMPLES / "subscriptions.json").read_text())
    overview = one(ins, "dataset_overview")
    assert overview["format"] == "json" and overview["rows"] == len(records)
    details = {d["name"]: d for d in overview["column_details"]}
    assert details["churned"]["type"] == "boolean"
    assert details["account.manager"]["type"] == "categorical"  # nested objects become dotted columns
    assert details["country"]["missing"] == sum(1 for r in records if r["country"] is None)

    mrr = [float(r["mrr"]) for r in records]
    check_numeric(one(ins, "numeric_summary", column="mrr"), mrr)
    plan = one(ins, "top_categories", column="plan")
    assert plan["emphasis"] == "business_description mentions 'plan', 'mrr'"
    for item in plan["top"]:
        vals = [float(r["mrr"]) for r in records if r["plan"] == item["value"]]
        assert item["rows"] == len(vals)
        assert item["mrr_total"] == pytest.approx(math.fsum(vals), rel=REL)
    churn = one(ins, "top_categories", column="churned")
    assert {t["value"]: t["rows"] for t in churn["top"]} == {
        "true": sum(1 for r in records if r["churned"]),
        "false": sum(1 for r in records if not r["churned"]),
    }
    seats = [float(r["seats"]) for r in records]
    corr = one(ins, "correlation", columns=["seats", "mrr"])
    assert corr["pearson_r"] == pytest.approx(statistics.correlation(seats, mrr), abs=1e-6)


# --- support_tickets.jsonl: JSON lines with timestamps ---------------------------------------------------


def test_support_tickets_jsonl(conn: Conn, config: Config) -> None:
    out = analyse(conn, config, "support_tickets.jsonl")
    ins = out["insights"]
    records = [json.loads(line) for line in (SAMPLES / "support_tickets.jsonl").read_text().splitlines()]
    overview = one(ins, "dataset_overview")
    assert overview["format"] == "jsonl" and overview["rows"] == len(records) == 600
    details = {d["name"]: d for d in overview["column_details"]}
    assert details["opened_at"]["type"] == "date" and details["ticket_id"]["type"] == "identifier"

    hours = [float(r["resolution_hours"]) for r in records]
    check_numeric(one(ins, "numeric_summary", column="resolution_hours"), hours)
    # hours are not additive: a priority gets the mean resolution time
    priority = one(ins, "top_categories", column="priority")
    assert priority["measures"]["resolution_hours"] == "mean"
    for item in priority["top"]:
        vals = [float(r["resolution_hours"]) for r in records if r["priority"] == item["value"]]
        assert item["resolution_hours_mean"] == pytest.approx(statistics.fmean(vals), rel=REL)
    # satisfaction drops as resolution drags on: monotone, bent by the tickets that fell through the cracks
    sat = [float(r["satisfaction"]) for r in records]
    corr = one(ins, "correlation", columns=["resolution_hours", "satisfaction"])
    assert corr["measure"] == "spearman" and corr["direction"] == "negative"
    assert corr["spearman_rho"] == pytest.approx(statistics.correlation(ranks(hours), ranks(sat)), abs=1e-6)
    outliers = one(ins, "outliers", column="resolution_hours")
    assert [o["value"] for o in outliers["high"][:3]] == sorted(hours, reverse=True)[:3]
    weekly = one(ins, "trend", measure="rows")
    assert weekly["granularity"] == "week" and sum(p["value"] for p in weekly["periods"]) == len(records)


def test_process_mode_and_a_relative_root(
    conn: Conn, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default execution mode runs the workflow in a child; a relative root is taken from the cwd."""
    monkeypatch.chdir(SAMPLES.parent)
    cfg = make_config(job_processing={"file_root": "samples", "execution_mode": "process"})
    worker = Worker(cfg)
    try:
        file_id = insert_file(conn, "sales.csv")
        job_id = insert_job(conn, job_type="analysis", file_id=file_id)
        assert worker.run_once()
    finally:
        worker.close_job_process()
    row = job(conn, job_id)
    assert row["status"] == "completed", row["error_message"]
    assert row["result"]["rows"] == 1500
    n = conn.execute("SELECT count(*) AS n FROM insights WHERE job_id = %s", (job_id,)).fetchone()
    assert n is not None and n["n"] == row["result"]["insights"] > 5
