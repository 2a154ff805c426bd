"""NDJSON export archives (the ``ndjson-export`` profile kind, recover): one dataset
per data type, one row per line."""

from __future__ import annotations

import csv
import io
import posixpath
import re

from bridge_downstream.common import jsoncodec
from bridge_downstream.common.text import printable
from bridge_downstream.ingest.context import ArchiveOutcome, IngestContext, InvalidArchive
from bridge_downstream.ingest.part_writer import PartWriter
from bridge_downstream.ingest.safe_archive import (
    SafeArchive,
    decode_utf8,
    kept_every_key,
    parse_json,
    refuse_duplicate_keys,
)
from bridge_downstream.ingest.validation import is_instant, ordering_fields, shown_value

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


class _Batch:
    """Lines of one export file on their way to its part file: the lines to
    write, and the lines read and their values until they are known to give
    no key twice -- looked for a batch at a time, as cheaply as one count
    (:func:`kept_every_key`), a line at a time only when that cannot tell."""

    __slots__ = ("instants", "lines", "numbers", "sources", "values")

    def __init__(self) -> None:
        self.numbers: list[int] = []
        self.sources: list[bytes] = []
        self.values: list[dict] = []
        self.lines: list[bytes] = []
        self.instants: set[str] = set()  # ordering values known to be instants (most rows repeat a few)

    def add(self, number: int, source: bytes, value: dict, line: bytes) -> None:
        self.numbers.append(number)
        self.sources.append(source)
        self.values.append(value)
        self.lines.append(line)

    def write(self, archive: SafeArchive, member: str, writer: PartWriter, dataset_id: str, partition) -> None:
        if not self.lines:
            return
        try:
            certain = kept_every_key(b"".join(self.sources), self.values)
        except TypeError:  # orjson's encode error: lines nested as deep as a row may be, plus the list around them
            certain = False
        if not certain:
            for number, source, value in zip(self.numbers, self.sources, self.values, strict=True):
                refuse_duplicate_keys(source, value, f"{member} line {number + 1}")
        archive.count_rows(len(self.lines))
        writer.write_many(dataset_id, partition, self.lines)


def _shown(value: object) -> str:
    return shown_value(value) if isinstance(value, str) else printable(jsoncodec.line(value).decode().rstrip()[:80])


def read_ndjson_export(
    archive: SafeArchive, metadata: dict[str, str], ctx: IngestContext, writer: PartWriter, outcome: ArchiveOutcome
) -> None:
    cohort = metadata.get("cohort") or ctx.profile.cohort
    if not cohort:
        raise InvalidArchive("no cohort: the export's metadata has no 'cohort' and the profile sets no default")
    dates = _export_dates(archive)
    ordering = ordering_fields(ctx.profile)
    for name in ordering:
        if name in dates and not is_instant(dates[name]):
            raise InvalidArchive(f"export {name} {shown_value(dates[name])} is not an ISO 8601 timestamp")
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
        archive.check_dataset_member(member)
        shared = {"cohort": cohort, **dates, "sourcefile": member}
        rows = jsoncodec.Rows(shared)
        row_ordering = [name for name in ordering if name not in shared]
        count = 0
        batch = _Batch()
        for number, line in archive.iter_lines(member):
            if not line.strip():
                continue
            row = parse_json(line, f"{member} line {number + 1}")
            if not isinstance(row, dict):
                raise InvalidArchive(
                    f"{printable(member)} line {number + 1} is not a JSON object",
                    {member: [f"line {number + 1} is not a JSON object"]},
                )
            for name in row_ordering:
                value = row.get(name)
                if value is None or (type(value) is str and value in batch.instants):
                    continue
                if not is_instant(value):
                    problem = f"{name} {_shown(value)} is not an ISO 8601 timestamp"
                    raise InvalidArchive(
                        f"{printable(member)} line {number + 1}: {problem}",
                        {member: [f"line {number + 1}: {problem}"]},
                    )
                batch.instants.add(value)
            batch.add(number, line, row, rows.line(row, number))
            count += 1
            if len(batch.lines) >= EXPORT_WRITE_BATCH:  # bounded memory for any file size
                batch.write(archive, member, writer, dataset_id, partition)
                batch = _Batch()
        batch.write(archive, member, writer, dataset_id, partition)
        if count == 0:
            outcome.files_skipped.append({"file": member, "reason": "empty data file"})
        else:
            outcome.rows[dataset_id] = count
            if rows.wide_integer_rows:
                outcome.wide_integer_rows[dataset_id] = rows.wide_integer_rows
