"""The analysis workflow's parts without a database: sniffing, decoding across chunks, bounded state."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import structlog

from jobcron.errors import InvalidJob, JobCancelled
from jobcron.workflows.analysis import analysis, files
from jobcron.workflows.analysis.accumulators import Categorical, Numeric
from jobcron.workflows.analysis.emphasis import additive, find
from jobcron.workflows.analysis.stats import Reservoir, quantile, ranks
from jobcron.workflows.base import FileInfo, WorkflowContext, WorkflowResult, WorkflowSettings


def run(
    root: Path, name: str, data: bytes | str, description: str | None = None, **settings: Any
) -> WorkflowResult:
    (root / name).write_bytes(data.encode() if isinstance(data, str) else data)
    ctx = WorkflowContext(
        job_id="t",
        job_type="analysis",
        attempt=1,
        user_id=None,
        business_description=description,
        metadata={},
        file=FileInfo("f", name, None, "processing"),
        logger=structlog.get_logger(),
        settings=WorkflowSettings(file_root=str(root), **settings),
    )
    return analysis(ctx)


def kinds(result: WorkflowResult) -> dict[str, str]:
    overview = next(i for i in result.insights if i.insight_type == "dataset_overview")
    return {d["name"]: d["type"] for d in overview.content["column_details"]}


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("a;b;c\n1;2,5;x\n3;4,5;y\n", ";"),
        ("a|b\n1|2\n3|4\n", "|"),
        ("a\tb\n1\t2\n3\t4\n", "\t"),
        ('name,comment\nann,"hello; there"\nbob,"x; y; z"\n', ","),
    ],
)
def test_the_delimiter_is_sniffed(tmp_path: Path, text: str, delimiter: str) -> None:
    result = run(tmp_path, "data.txt", text)
    assert result.result["rows"] == 2
    overview = result.insights[0].content
    assert overview["delimiter"] == delimiter and overview["header"] is True


def test_no_header_gets_numbered_columns(tmp_path: Path) -> None:
    result = run(tmp_path, "n.csv", "1,2\n3,4\n5,6\n")
    assert list(kinds(result)) == ["column_1", "column_2"] and result.result["rows"] == 3


def test_old_mac_line_endings_and_utf16(tmp_path: Path) -> None:
    assert run(tmp_path, "mac.csv", "a,b\r1,2\r3,4\r").result["rows"] == 2
    utf16 = run(tmp_path, "u.csv", "city,n\nZürich,1\nKöln,2\n".encode("utf-16"))
    assert utf16.result["encoding"] == "utf-16" and utf16.result["rows"] == 2


def test_decoding_and_json_records_across_tiny_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 7 bytes cut UTF-8 sequences, lines and JSON records in half: nothing may change."""
    records = [{"city": "Zürich", "n": i, "tag": "ü" * (i % 5)} for i in range(300)]
    text = json.dumps(records, ensure_ascii=False, indent=1)
    whole = run(tmp_path, "big.json", text)
    monkeypatch.setattr(files, "CHUNK_BYTES", 7)
    tiny = run(tmp_path, "small.json", text)
    assert tiny.result["rows"] == whole.result["rows"] == 300
    assert [i.content for i in tiny.insights[1:]] == [i.content for i in whole.insights[1:]]
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    assert run(tmp_path, "small.jsonl", lines).result["rows"] == 300


def test_latin1_after_a_long_utf8_looking_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "CHUNK_BYTES", 64)
    data = ("city,n\n" + "Bonn,1\n" * 40).encode() + "Besançon,2\nKöln,3\n".encode("latin-1")
    result = run(tmp_path, "late.csv", data)
    top = next(i for i in result.insights if i.insight_type == "top_categories").content
    assert {t["value"] for t in top["top"]} == {"Bonn", "Besançon", "Köln"}
    assert result.result["encoding"] == "latin-1" and "from byte 292" in result.result["encoding_note"]


def test_json_keys_that_appear_late_are_still_summarised(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [{"n": i} for i in range(1500)]
    for i in range(1200, 1500):
        records[i]["late_score"] = (i * 37) % 1000
    result = run(tmp_path, "late.json", json.dumps(records))
    summary = next(
        i.content
        for i in result.insights
        if i.insight_type == "numeric_summary" and i.content["column"] == "late_score"
    )
    assert summary["count"] == 300 and summary["missing"] == 1200
    assert summary["mean"] == pytest.approx(statistics.fmean((i * 37) % 1000 for i in range(1200, 1500)))
    assert any("after row 1000" in n for n in result.result["notes"])


def test_a_line_longer_than_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobcron.workflows.analysis import readers

    monkeypatch.setattr(readers, "MAX_LINE_CHARS", 1000)
    monkeypatch.setattr(files, "CHUNK_BYTES", 256)
    with pytest.raises(InvalidJob, match="line 3 is longer than 16 MB"):
        run(tmp_path, "long.csv", "a,b\n1,2\n" + "x" * 5000 + "\n")


def test_a_cancel_stops_the_pass(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("n,v\n" + "".join(f"{i},{i % 7}\n" for i in range(5000)))
    ctx = WorkflowContext(
        job_id="t",
        job_type="analysis",
        attempt=1,
        user_id=None,
        business_description=None,
        metadata={},
        file=FileInfo("f", "c.csv", None, "processing"),
        logger=structlog.get_logger(),
        settings=WorkflowSettings(file_root=str(tmp_path)),
    )
    ctx.cancel_event.set()
    with pytest.raises(JobCancelled):
        analysis(ctx)


def test_types_and_number_formats_are_inferred(tmp_path: Path) -> None:
    text = "id,when,price,share,flag,region,note\n" + "".join(
        f'{i},{i % 28 + 1:02d}/03/2024,"${1000 + i:,}.50",{i * 7 % 90}%,{"yes" if i % 2 else "no"},'
        f"{'NSEW'[i % 4]},free text number {i} with words\n"
        for i in range(60)
    )
    result = run(tmp_path, "t.csv", text)
    assert kinds(result) == {
        "id": "identifier",
        "when": "date",
        "price": "numeric",
        "share": "numeric",
        "flag": "boolean",
        "region": "categorical",
        "note": "text",
    }
    price = next(i.content for i in result.insights if i.content.get("column") == "price")
    assert price["max"] == 1059.5


def test_business_description_matching() -> None:
    cols = ["order_id", "order_date", "region", "product_category", "unit_price", "revenue", "units"]
    e = find("Quarterly sales by region and product category; units sold", cols)
    assert list(e.named) == ["revenue", "region", "product_category", "units"]
    assert e.reason(["revenue"]) == "business_description mentions 'sales' (read as 'revenue')"
    assert find(None, cols).named == {} and find("nothing relevant", cols).named == {}
    assert additive("revenue") and additive("units") and not additive("unit_price")
    assert not additive("customer_rating") and not additive("discount_pct")


def test_numeric_batches_match_one_at_a_time() -> None:
    values = ["1.5", "", "2", "NA", "x", "inf", "1e3", " 4 ", "-3.25"] * 50
    batched, single = Numeric(None), Numeric(None)
    out = batched.add_many(values)
    assert out == [single.add(v) for v in values]
    for field in ("n", "missing", "invalid", "lo", "hi", "integer"):
        assert getattr(batched, field) == getattr(single, field), field
    assert batched.mean == pytest.approx(single.mean) and batched.stdev == pytest.approx(single.stdev)
    assert (batched.n, batched.missing, batched.invalid) == (250, 100, 100)


def test_category_counts_stay_bounded_and_keep_the_frequent_values() -> None:
    acc = Categorical(cap=50)
    stream = [f"rare{i}" for i in range(5000)] + ["big"] * 800 + ["mid"] * 300
    stream = [stream[(i * 7919) % len(stream)] for i in range(len(stream))]  # spread them out
    for at in range(0, len(stream), 256):
        acc.add_many(stream[at : at + 256])
    assert len(acc.counts) <= 100 and acc.pruned and acc.distinct is None
    truth = Counter(stream)
    for value in ("big", "mid"):
        assert truth[value] - acc.error <= acc.counts[value] <= truth[value]


def test_reservoir_is_uniform_and_repeatable() -> None:
    def sample(seed: int) -> list[int]:
        r = Reservoir(100, seed)
        for n in range(1, 10_001):
            if n == r.next:
                r.put(n)
        return list(r.items)

    assert sample(1) == sample(1) and len(sample(1)) == 100
    pooled = [x for seed in range(100) for x in sample(seed)]
    deciles = Counter((x - 1) // 1000 for x in pooled)
    assert all(850 < deciles[d] < 1150 for d in range(10)), deciles  # 1000 expected, sd about 30


def test_quantiles_and_ranks_match_the_statistics_module() -> None:
    xs = sorted([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0])
    assert [quantile(xs, p) for p in (0.25, 0.5, 0.75)] == pytest.approx(
        statistics.quantiles(xs, n=4, method="inclusive")
    )
    assert ranks([10.0, 20.0, 10.0, 30.0]) == [1.5, 3.0, 1.5, 4.0]


def test_analysis_reports_its_progress_through_the_file(tmp_path: Path) -> None:
    rows = "\n".join(f"{i},{i * 1.5},r{i % 7}" for i in range(200_000))
    (tmp_path / "big.csv").write_text("id,amount,region\n" + rows)
    seen: list[tuple[float, str | None]] = []
    ctx = WorkflowContext(
        job_id="t",
        job_type="analysis",
        attempt=1,
        user_id=None,
        business_description=None,
        metadata={},
        file=FileInfo("f", "big.csv", None, "processing"),
        logger=structlog.get_logger(),
        settings=WorkflowSettings(file_root=str(tmp_path)),
        progress_sink=lambda fraction, message: seen.append((fraction, message)),
    )
    analysis(ctx)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and len(set(fractions)) >= 4
    assert seen[-1] == (0.95, "building insights") and seen[1][1] == "reading big.csv"
    assert ctx.reported == (0.95, "building insights")


@pytest.mark.parametrize(
    ("fraction", "error"),
    [
        (1.5, ValueError),
        (float("nan"), ValueError),
        (-0.1, ValueError),
        ("half", TypeError),
        (True, TypeError),
    ],
)
def test_a_progress_fraction_must_be_a_number_from_0_to_1(fraction: Any, error: type[Exception]) -> None:
    ctx = WorkflowContext("t", "x", 1, None, None, {}, None, structlog.get_logger())
    with pytest.raises(error, match="fraction must be a number from 0 to 1"):
        ctx.progress(fraction)
    ctx.progress(1, "x" * 500)
    assert ctx.reported == (1.0, "x" * 200)
