"""Peak memory of the analysis workflow on a generated ~200 MB CSV (slow: run it with -m slow or in the bench)."""

from __future__ import annotations

import pytest

from bench.analysis_memory import BOUND_MB, run


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_200_mb_csv_stays_under_the_memory_bound() -> None:
    figures = run(200)
    assert figures["rows"] > 2_000_000 and figures["file_mb"] >= 199
    assert figures["peak_rss_mb"] <= BOUND_MB, figures
