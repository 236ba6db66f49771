"""The built-in `analysis` workflow: read the job's data file once and turn it into business insights.

This is also the reference example of a workflow: it takes a WorkflowContext, reads only what the
context gives it (the file row, the business description, settings), raises InvalidJob/PermanentError
for input that can never work, checks for a cancel while it runs, and returns a WorkflowResult whose
insight rows the daemon stores in the transaction that completes the job.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from jobcron.errors import InvalidJob
from jobcron.workflows.analysis.emphasis import find
from jobcron.workflows.analysis.files import TextReader, open_file, resolve_file, resolve_root
from jobcron.workflows.analysis.insights import Builder
from jobcron.workflows.analysis.profile import Profile
from jobcron.workflows.analysis.readers import MAX_KEYS, open_table
from jobcron.workflows.base import WorkflowContext, WorkflowResult

READ_SHARE = 0.95


def analysis(ctx: WorkflowContext) -> WorkflowResult:
    """Analyse the job's CSV/TSV/JSON/JSON-lines file and return a summary and insight rows."""
    started = time.monotonic()
    if ctx.file is None:
        raise InvalidJob(
            "analysis: the job has no file (processing_jobs.file_id is NULL or its files row is gone)"
        )
    shown = ctx.file.file_path
    root = resolve_root(ctx.settings.file_root)
    real = resolve_file(root, shown)
    raw, size = open_file(real, root, shown, ctx.settings.analysis_max_bytes)
    with raw:
        text = TextReader(raw, shown, ctx.settings.analysis_max_bytes)
        names = [n for n in (ctx.file.original_name, real.name) if n]
        table = open_table(text.chunks(), names, shown)
        label = f"reading {ctx.file.original_name or real.name}"

        def between_batches() -> None:
            # progress through the file: the share of its bytes read (the last 5% are the insights)
            ctx.check_cancelled()
            ctx.progress(READ_SHARE * min(raw.tell() / size, 1.0), label)

        ctx.progress(0.0, label)
        profile = Profile(table, ctx.business_description, ctx.settings.analysis_max_rows, between_batches)
        profile.run()
    ctx.progress(READ_SHARE, "building insights")
    if profile.rows == 0:
        what = "a header but no data rows" if table.format in ("csv", "tsv") else "no records"
        raise InvalidJob(f"analysis: {shown} has {what}")
    summary = profile.summary()
    if table.details.get("ignored_key_values"):
        summary.notes.append(
            f"{table.details['ignored_key_values']} values under keys past the first {MAX_KEYS} distinct JSON keys were ignored"
        )
    if all(c.plan.kind == "empty" for c in summary.columns):
        raise InvalidJob(f"analysis: {shown} has no usable columns: every value is empty")
    emphasis = find(ctx.business_description, [c.name for c in summary.columns])
    source: dict[str, Any] = {"format": table.format, **text.describe(), **table.details, "file_bytes": size}
    insights = Builder(summary, emphasis, source).build()
    result = {
        "file": shown,
        "format": table.format,
        "encoding": text.encoding,
        **({"encoding_note": source["encoding_note"]} if "encoding_note" in source else {}),
        "rows": summary.rows,
        "columns": len(summary.columns),
        "insights": len(insights),
        "insight_types": dict(Counter(i.insight_type for i in insights)),
        "emphasis": {
            "named_columns": list(emphasis.named),
            "measures": [m.name for m in summary.measures],
            "date_column": summary.date.name if summary.date else None,
        },
        "highlights": [str(i.content.get("summary")) for i in insights[:6]],
        "notes": summary.notes,
        "seconds": round(time.monotonic() - started, 3),
    }
    return WorkflowResult(result=result, insights=insights)


__all__ = ["analysis"]
