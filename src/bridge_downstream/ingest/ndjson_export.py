"""NDJSON export archives (the ``ndjson-export`` profile kind, recover): one dataset
per data type, one row per line."""

from __future__ import annotations

import csv
import io
import posixpath
import re

from bridge_downstream.common import jsoncodec
from bridge_downstream.ingest.context import ArchiveOutcome, IngestContext, InvalidArchive
from bridge_downstream.ingest.part_writer import PartWriter
from bridge_downstream.ingest.safe_archive import (
    SafeArchive,
    decode_utf8,
    parse_json_document,
)

EXPORT_WRITE_BATCH = 4096  # export lines written at once


EXPORT_FILE = re.compile(
    r"^(?P<type>[A-Za-z0-9]+)(?:_(?P<sub>[A-Za-z0-9]+?))?(?P<deleted>_Deleted)?_(?P<start>\d{8})(?:-(?P<end>\d{8}))?\.json$"
)


def export_dataset_id(file_name: str) -> str | None:
    """``HealthKitV2Samples_Steps_Deleted_20230112-20230114.json`` -> ``HealthKitV2Samples_Steps_Deleted``."""
    match = EXPORT_FILE.match(file_name)
    if not match or match.group("sub") == "Deleted":
        return None
    parts = [match.group("type")]
    if match.group("sub"):
        parts.append(match.group("sub"))
    return "_".join(parts) + (match.group("deleted") or "")


def _export_dates(archive: SafeArchive) -> dict[str, str]:
    manifest = next((n for n in archive.names if posixpath.basename(n) == "Manifest.csv"), None)
    if manifest is not None:
        text = decode_utf8(archive.read_bytes(manifest), manifest)
        rows = list(csv.DictReader(io.StringIO(text)))
        if rows and rows[0].get("ExportStartDate") and rows[0].get("ExportEndDate"):
            return {"exportstartdate": rows[0]["ExportStartDate"], "exportenddate": rows[0]["ExportEndDate"]}
    starts, ends = [], []
    for name in archive.names:
        match = EXPORT_FILE.match(posixpath.basename(name))
        if match:
            starts.append(match.group("start"))
            ends.append(match.group("end") or match.group("start"))
    if not starts:
        raise InvalidArchive(
            "export dates unknown: no Manifest.csv with ExportStartDate/ExportEndDate and no dated data file"
        )
    iso = lambda d: f"{d[:4]}-{d[4:6]}-{d[6:]}"
    return {"exportstartdate": iso(min(starts)), "exportenddate": iso(max(ends))}


def read_ndjson_export(
    archive: SafeArchive, metadata: dict[str, str], ctx: IngestContext, writer: PartWriter, outcome: ArchiveOutcome
) -> None:
    cohort = metadata.get("cohort") or ctx.profile.cohort
    if not cohort:
        raise InvalidArchive("no cohort: the export's metadata has no 'cohort' and the profile sets no default")
    dates = _export_dates(archive)
    partition = (("cohort", cohort),)
    for member in sorted(archive.names):
        file_name = posixpath.basename(member)
        if file_name == "Manifest.csv":
            outcome.files_skipped.append({"file": member, "reason": "export manifest, not a data file"})
            continue
        dataset_id = export_dataset_id(file_name)
        if dataset_id is None:
            outcome.files_skipped.append(
                {
                    "file": member,
                    "reason": "name does not follow {DataType}_[{SubType}_][Deleted_]{YYYYMMDD}[-{YYYYMMDD}].json",
                }
            )
            continue
        rows = jsoncodec.Rows({"cohort": cohort, **dates, "sourcefile": member})
        count = 0
        lines: list[bytes] = []
        for number, line in archive.iter_lines(member):
            if not line.strip():
                continue
            row = parse_json_document(line, f"{member} line {number + 1}")
            if not isinstance(row, dict):
                raise InvalidArchive(
                    f"{member} line {number + 1} is not a JSON object",
                    {member: [f"line {number + 1} is not a JSON object"]},
                )
            lines.append(rows.line(row, number))
            count += 1
            if len(lines) >= EXPORT_WRITE_BATCH:  # bounded memory for any file size
                writer.write_many(dataset_id, partition, lines)
                lines = []
        writer.write_many(dataset_id, partition, lines)
        if count == 0:
            outcome.files_skipped.append({"file": member, "reason": "empty data file"})
        else:
            outcome.rows[dataset_id] = count
