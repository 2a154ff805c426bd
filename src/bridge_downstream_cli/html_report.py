"""A run report to look at: ``run-report.html`` beside ``run-report.json``.

One static page, no server and no external assets (it is opened from a
bucket or a laptop, often offline): the figures are written into the page
as HTML, and the upload-day chart is inline SVG, so the page shows the same
with scripts off. Every figure carries a ``data-figure`` attribute naming
what it counts, so a test (or a person with the inspector) can compare the
page with the JSON it came from.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterable, Mapping

from bridge_downstream.common.storage import Storage

REPORT_PAGE_NAME = "run-report.html"
CHART_WIDTH, BAR_HEIGHT, LABEL_WIDTH = 640, 18, 96


def reason_group(reason: str | None) -> str:
    """The kind of a reason, its details aside: ``failed validation:
    taskData.json`` and ``failed validation: motion.json`` are one group, so
    1,000 invalid archives read as a few lines."""
    text = (reason or "no reason given").strip()
    return text.split(":", 1)[0].strip() or text


def grouped_reasons(entries: Iterable[Mapping]) -> list[tuple[str, int]]:
    """Reason groups, the most frequent first."""
    counts = Counter(reason_group(entry.get("reason")) for entry in entries)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def rows_per_upload_day(parts: Iterable[Mapping]) -> dict[str, int]:
    """Rows ingested per upload day, from the run's part list (each part
    file is in one ``year/month/day`` partition)."""
    days: Counter[str] = Counter()
    for part in parts:
        partition = part.get("partition") or {}
        if {"year", "month", "day"} <= partition.keys():
            day = f"{int(partition['year']):04d}-{int(partition['month']):02d}-{int(partition['day']):02d}"
            days[day] += int(part.get("rows") or 0)
    return dict(sorted(days.items()))


def published_rows(report: Mapping) -> dict[str, int]:
    """Root-table rows published per dataset: its tables' rows, the root
    being the one named after the dataset (``dataset_<id lower-case>``)."""
    rows: dict[str, int] = {}
    for name, table in (report.get("tables") or {}).items():
        if name == "dataset_" + table["dataset"].lower():
            rows[table["dataset"]] = table["rows"]
    return rows


def dropped_records(report: Mapping) -> dict[str, dict[str, int]]:
    """Per dataset (data type), the records publish dropped as superseded
    exports or deletions (recover's record counts)."""
    dropped: dict[str, dict[str, int]] = {}
    for count in report.get("record_counts") or []:
        entry = dropped.setdefault(count["data_type"], {"superseded": 0, "deleted": 0})
        entry["superseded"] += int(count.get("duplicates_dropped") or 0)
        entry["deleted"] += int(count.get("deleted_dropped") or 0)
    return dropped


def _figure(name: str, value: object) -> str:
    return f'<td class="n" data-figure="{html.escape(name)}">{html.escape(str(value))}</td>'


def _table(caption: str, headers: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f"<h2>{html.escape(caption)}</h2><p class=empty>{html.escape(empty)}</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<h2>{html.escape(caption)}</h2><table><tr>{head}</tr>{''.join(rows)}</table>"


def _day_chart(days: Mapping[str, int]) -> str:
    if not days:
        return "<h2>Rows per upload day</h2><p class=empty>no rows ingested</p>"
    most = max(days.values()) or 1
    height = BAR_HEIGHT * len(days) + 4
    bars = []
    for index, (day, rows) in enumerate(days.items()):
        y = index * BAR_HEIGHT
        width = max(1, round((CHART_WIDTH - LABEL_WIDTH - 80) * rows / most))
        bars.append(
            f'<g data-day="{day}" data-rows="{rows}"><text x="0" y="{y + 13}">{day}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 2}" width="{width}" height="{BAR_HEIGHT - 4}"></rect>'
            f'<text x="{LABEL_WIDTH + width + 4}" y="{y + 13}">{rows}</text></g>'
        )
    return (
        f'<h2>Rows per upload day</h2><svg id="days" width="{CHART_WIDTH}" height="{height}" '
        f'role="img" aria-label="rows per upload day">{"".join(bars)}</svg>'
    )


def _quality_rows(failures: Mapping[str, Mapping]) -> list[str]:
    """One row per failed expectation (``quality_failures`` of the run
    report): what was expected, whether the version was blocked, how many
    values were unexpected and the sampled ones with their keys."""
    rows = []
    for dataset_id, found in sorted(failures.items()):
        verdict = "blocked: the previous version stays current" if found.get("blocked") else "published"
        report_link = found.get("report")
        for result in found.get("failed") or []:
            figure = f"quality.{dataset_id}.{result['table']}.{result['expectation']}"
            unexpected = (
                result["unexpected_count"] if result.get("unexpected_count") is not None else result.get("error")
            )
            samples = "<br>".join(
                f"{html.escape(json.dumps(sample.get('key') or {}, sort_keys=True))} "
                f"&rarr; {html.escape(json.dumps(sample.get('value')))}"
                for sample in result.get("samples") or []
            )
            link = f' (<a href="{html.escape(str(report_link))}">report</a>)' if report_link else ""
            rows.append(
                f"<tr><td>{html.escape(dataset_id)}</td><td>{html.escape(result['table'])}</td>"
                f"<td>{html.escape(result['expectation'])}</td><td>{html.escape(result['policy'])}</td>"
                f"<td>{html.escape(verdict)}{link}</td>{_figure(figure, unexpected)}"
                f'<td data-samples="{html.escape(figure)}">{samples}</td></tr>'
            )
    return rows


STYLE = (
    "body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin-bottom:1em}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}td.n{text-align:right}"
    "svg text{font-size:11px}svg rect{fill:#4a78b0}.empty{color:#777}"
)


def render_run_report(report: Mapping, parts: Iterable[Mapping] = ()) -> str:
    """The page for one run's report (``run-report.json``) and its part list."""
    archives = report.get("archives") or {}
    outcome_rows = [
        f"<tr><td>{status}</td>{_figure('archives.' + status, archives.get(status, 0))}</tr>"
        for status in ("total", "processed", "invalid", "skipped")
    ]
    invalid_rows = [
        f"<tr><td>{html.escape(group)}</td>{_figure('invalid.' + group, count)}</tr>"
        for group, count in grouped_reasons(report.get("invalid") or [])
    ]
    published = published_rows(report)
    dropped = dropped_records(report)
    rescued = {dataset: sum(paths.values()) for dataset, paths in (report.get("rescued_values") or {}).items()}
    dataset_rows = []
    for dataset_id, counts in sorted((report.get("datasets") or {}).items()):
        gone = dropped.get(dataset_id, {})
        dataset_rows.append(
            f"<tr><td>{html.escape(dataset_id)}</td>"
            + _figure(f"ingested.{dataset_id}", counts.get("rows", 0))
            + _figure(f"published.{dataset_id}", published.get(dataset_id, "-"))
            + _figure(f"superseded.{dataset_id}", gone.get("superseded", 0))
            + _figure(f"deleted.{dataset_id}", gone.get("deleted", 0))
            + _figure(f"rescued.{dataset_id}", rescued.get(dataset_id, 0))
            + "</tr>"
        )
    skipped_files = [
        f"<tr><td>{html.escape(entry['file'])}</td><td>{html.escape(reason_group(entry['reason']))}</td>"
        f"{_figure('files_skipped.' + entry['file'], entry.get('archives', 0))}</tr>"
        for entry in report.get("files_skipped") or []
    ]
    skipped_archives = [
        f"<tr><td>{html.escape(group)}</td>{_figure('skipped.' + group, count)}</tr>"
        for group, count in grouped_reasons(report.get("skipped") or [])
    ]
    run_id = html.escape(str(report.get("run_id", "")))
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>run {run_id}</title><style>{STYLE}</style></head><body>",
            f"<h1>Run {run_id}</h1>",
            (
                f"<p>profile {html.escape(str(report.get('profile', '?')))}, registry "
                f"{html.escape(str(report.get('registry_version', '?')))}, "
                f"{html.escape(str(report.get('started_at', '')))} to {html.escape(str(report.get('finished_at', '')))}</p>"
            ),
            _table("Archives by outcome", ["outcome", "archives"], outcome_rows, "no archives"),
            _table("Invalid archives by reason", ["reason", "archives"], invalid_rows, "no invalid archive"),
            _table("Skipped archives by reason", ["reason", "archives"], skipped_archives, "no skipped archive"),
            _table(
                "Rows per dataset, ingested and published",
                ["dataset", "ingested rows", "published root rows", "superseded", "deleted", "rescued values"],
                dataset_rows,
                "no dataset",
            ),
            _table("Files skipped in archives", ["file", "reason", "archives"], skipped_files, "no file skipped"),
            _table(
                "Data-quality expectations that failed",
                ["dataset", "table", "expectation", "policy", "version", "unexpected", "samples (key → value)"],
                _quality_rows(report.get("quality_failures") or {}),
                "every expectation passed",
            ),
            _day_chart(rows_per_upload_day(parts)),
            "</body></html>",
        ]
    )


def write_run_report_page(storage: Storage, report: Mapping) -> str:
    """Write the page beside ``run-report.json`` in ``storage`` (the run's
    output root); its key."""
    parts: list[dict] = []
    if report.get("parts") and storage.exists(report["parts"]):
        parts = [json.loads(line) for line in storage.read_bytes(report["parts"]).splitlines() if line.strip()]
    storage.write_bytes(REPORT_PAGE_NAME, render_run_report(report, parts).encode())
    return REPORT_PAGE_NAME
