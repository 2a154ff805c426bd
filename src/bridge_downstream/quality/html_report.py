"""The quality report as one self-contained HTML page (no scripts, no external
assets), rendered from the results :mod:`.runner` stores: GX's Data Docs need a
file-backed context, which a run keeps ephemeral (docs/decisions/0023)."""

from __future__ import annotations

import json
from html import escape

from bridge_downstream.publish.manifest import PublishManifest

_STYLE = """
body { font-family: sans-serif; margin: 2em; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
.passed { color: #1a7f37; } .failed { color: #cf222e; font-weight: bold; }
code { font-size: 90%; }
"""


def render_quality_html(checked: list[tuple[PublishManifest, dict]]) -> str:
    """One section per version: its expectations, passed or failed, with samples of unexpected values."""
    sections = [_section(manifest, quality) for manifest, quality in checked]
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Data quality</title>"
        f"<style>{_STYLE}</style></head><body><h1>Data quality</h1>{''.join(sections)}</body></html>\n"
    )


def _section(manifest: PublishManifest, quality: dict) -> str:
    verdict = "passed" if quality["passed"] else "BLOCKED" if quality["blocked"] else "failed (warn)"
    rows = "".join(_row(result) for result in quality["results"])
    return (
        f"<h2>{escape(manifest.dataset_id)} <small>version {escape(manifest.version)}</small></h2>"
        f"<p class='{'passed' if quality['passed'] else 'failed'}'>{escape(verdict)}, "
        f"checked {escape(quality['checked_at'])}</p>"
        "<table><tr><th>table</th><th>expectation</th><th>policy</th><th>result</th>"
        "<th>rows</th><th>unexpected</th><th>samples (value, key)</th><th>note</th></tr>"
        f"{rows}</table>"
    )


def _row(result: dict) -> str:
    outcome = "passed" if result["passed"] else "failed"
    samples = "<br>".join(
        f"<code>{escape(json.dumps(s['value']))}</code> {escape(json.dumps(s['key'], sort_keys=True))}"
        for s in result["samples"]
    )
    cells = (
        escape(result["table"]),
        escape(result["expectation"]),
        escape(result["policy"]),
        f"<span class='{outcome}'>{outcome}</span>",
        escape(str(result["element_count"] if result["element_count"] is not None else "")),
        escape(str(result["unexpected_count"] if result["unexpected_count"] is not None else "")),
        samples,
        escape(result["error"] or result["note"] or ""),
    )
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"
