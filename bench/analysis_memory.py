"""Peak memory and speed of the `analysis` workflow on a generated CSV of about 200 MB.

    .venv/bin/python -m bench.analysis_memory [--mb 200] [--keep DIR]

Writes the CSV (fixed seed; 12 columns: dates, categories, a high-cardinality customer column,
measures with a trend, outliers and a correlation), then analyses it in a fresh child process that
first imports the daemon (jobcron.daemon.worker), so the figures are those of a daemon's process. Prints
one JSON object: file size, rows, seconds, rows/s, MB/s, the baseline and peak RSS, and whether
the peak stayed under BOUND_MB. Exit code 0 when it did, 1 when it did not.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

BOUND_MB = 160  # the documented peak RSS of a daemon process analysing a file of any length (<= 50 columns)
HEADER = "order_id,order_date,region,product,channel,customer,units,unit_price,discount_pct,revenue,shipping_cost,customer_rating\n"


def make_csv(path: Path, megabytes: float, seed: int = 7) -> int:
    """Write about `megabytes` MB of order rows; returns the number of rows."""
    rng = random.Random(seed)
    regions = ["North", "East", "South", "West", "Central"]
    products = [("Widget, Small", 12.5), ("Widget, Large", 24.0), ("Gadget Lite", 49.0), ("Gadget Pro", 89.0)]
    channels = ["Online", "Retail", "Partner"]
    days = [(date(2019, 1, 1) + timedelta(days=i)).isoformat() for i in range(6 * 365)]
    target = int(megabytes * 1024 * 1024)
    rows = written = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        while written < target:
            block = []
            for _ in range(10_000):
                rows += 1
                # later days are likelier: volume grows over the six years
                day = days[int(len(days) * rng.random() ** 0.7)]
                product, price = products[rng.randrange(4)]
                units = (
                    1 + int(rng.expovariate(0.2)) if rows % 100_000 else 5_000
                )  # a bulk order now and then
                unit_price = round(price * rng.uniform(0.9, 1.1), 2)
                discount = rng.choice((0, 0, 5, 10))
                revenue = round(units * unit_price * (1 - discount / 100), 2)
                shipping = round(4 + 0.6 * units * rng.uniform(0.6, 1.4), 2)
                rating = "" if rng.random() < 0.08 else rng.randint(1, 5)
                block.append(
                    f'SO-{rows},{day},{regions[rng.randrange(5)]},"{product}",{channels[rng.randrange(3)]},'
                    f"C{rng.randrange(250_000):06d},{units},{unit_price},{discount},{revenue},{shipping},{rating}\n"
                )
            text = "".join(block)
            f.write(text)
            written += len(text)
    return rows


def child(root: str, name: str) -> dict[str, Any]:
    """Run in a fresh process: import the daemon, then analyse the file; report time and memory."""
    import structlog

    import jobcron.daemon.worker  # noqa: F401 - a daemon's baseline: psycopg, structlog, the loop
    from jobcron.workflows import BUILTINS
    from jobcron.workflows.base import FileInfo, WorkflowContext, WorkflowSettings

    baseline = _status_kb("VmRSS")
    ctx = WorkflowContext(
        job_id="bench",
        job_type="analysis",
        attempt=1,
        user_id=None,
        business_description="revenue by region",
        metadata={},
        file=FileInfo("bench", name, name, "processing"),
        logger=structlog.get_logger(),
        settings=WorkflowSettings(file_root=root, analysis_max_rows=10**9, analysis_max_bytes=2**40),
    )
    started = time.perf_counter()
    out = BUILTINS["analysis"](ctx)
    seconds = time.perf_counter() - started
    return {
        "rows": out.result["rows"],
        "insights": out.result["insights"],
        "seconds": round(seconds, 2),
        "baseline_rss_mb": round(baseline / 1024, 1),
        "peak_rss_mb": round(_status_kb("VmHWM") / 1024, 1),
    }


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run(megabytes: float = 200, keep: Path | None = None) -> dict[str, Any]:
    """Generate the file, analyse it in a child process, and return the figures."""
    with tempfile.TemporaryDirectory(prefix="jobcron-bench-") as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "orders.csv"
        if not path.exists() or abs(path.stat().st_size / 2**20 - megabytes) > 1:
            make_csv(path, megabytes)
        size_mb = path.stat().st_size / 2**20
        proc = subprocess.run(
            [sys.executable, "-m", "bench.analysis_memory", "--child", str(folder), path.name],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent.parent,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the analysis child failed: {proc.stderr.strip()[-2000:]}")
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures.update(
        file_mb=round(size_mb, 1),
        rows_per_s=round(figures["rows"] / figures["seconds"]),
        mb_per_s=round(size_mb / figures["seconds"], 1),
        growth_mb=round(figures["peak_rss_mb"] - figures["baseline_rss_mb"], 1),
        bound_mb=BOUND_MB,
    )
    figures["pass"] = figures["peak_rss_mb"] <= BOUND_MB
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mb", type=float, default=200, help="size of the generated CSV (default 200)")
    parser.add_argument("--keep", type=Path, help="folder to keep (and reuse) the generated CSV in")
    parser.add_argument("--child", nargs=2, metavar=("ROOT", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    figures = run(args.mb, args.keep)
    print(json.dumps({"benchmark": "analysis_memory", **figures}))
    return 0 if figures["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
