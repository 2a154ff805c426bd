"""NDJSON export archives (the ``ndjson-export`` profile kind, recover): one dataset
per data type, one row per line."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from bridge_downstream.common import jsoncodec
from bridge_downstream.common.text import printable
from bridge_downstream.ingest.context import ArchiveOutcome, IngestContext, InvalidArchive
from bridge_downstream.ingest.export_transforms import export_rows
from bridge_downstream.ingest.part_writer import PartWriter
from bridge_downstream.ingest.safe_archive import (
    SafeArchive,
    kept_every_key,
    parse_json,
    refuse_duplicate_keys,
)
from bridge_downstream.ingest.validation import is_instant, ordering_fields, shown_value

EXPORT_WRITE_BATCH = 4096  # export lines written at once

# recover's file-name grammar (its s3_to_json ``get_metadata``): the data type
# is the first ``_`` part, the dates the last; between them a subtype, a
# qualifier that names no dataset (``HealthKitV2Heartbeat_Samples``) and
# ``Deleted``.
EXPORT_FILE = re.compile(
    r"^(?P<type>[A-Za-z0-9]+)(?P<middle>(?:_[A-Za-z0-9]+)*?)_(?:(?P<start>\d{8})-)?(?P<end>\d{8})\.json$"
)
EXPORT_FILE_GRAMMAR = "{DataType}_[{SubType}_][Deleted_][{YYYYMMDD}-]{YYYYMMDD}.json"
DELETED = "Deleted"
EXPORT_START_DATE, EXPORT_END_DATE = "export_start_date", "export_end_date"


@dataclass(frozen=True)
class ExportFile:
    """What an export file's name says: its dataset, its subtype (data types
    that have one) and its export dates as recover wrote them
    (``datetime.isoformat()``; no start where the name gives one date)."""

    dataset_id: str
    subtype: str | None
    start_date: str | None
    end_date: str


def export_file(file_name: str, subtype_data_types: Collection[str] = ()) -> ExportFile | None:
    """``HealthKitV2Samples_Steps_Deleted_20230112-20230114.json`` -> dataset
    ``HealthKitV2Samples_Deleted``, subtype ``Steps``; None where the name is
    not of the grammar, or is a subtype data type's without its subtype.
    ``ValueError`` where a date of the name is no calendar date."""
    match = EXPORT_FILE.match(file_name)
    if not match:
        return None
    data_type, middle = match.group("type"), match.group("middle").split("_")[1:]
    deleted = bool(middle) and middle[-1] == DELETED
    if deleted:
        middle.pop()
    subtype = None
    if data_type in subtype_data_types:
        if not middle:
            return None
        subtype = middle[0]
    start = match.group("start")
    return ExportFile(
        dataset_id=data_type + ("_" + DELETED if deleted else ""),
        subtype=subtype,
        start_date=_iso_date(start) if start else None,
        end_date=_iso_date(match.group("end")),
    )


def export_dataset_id(file_name: str, subtype_data_types: Collection[str] = ()) -> str | None:
    """``HealthKitV2Workouts_Deleted_20230112-20230114.json`` -> ``HealthKitV2Workouts_Deleted``."""
    try:
        parsed = export_file(file_name, subtype_data_types)
    except ValueError:
        return None
    return parsed.dataset_id if parsed else None


def _iso_date(digits: str) -> str:
    return datetime.strptime(digits, "%Y%m%d").isoformat()


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
        raise InvalidArchive(
            "no cohort: the archive's key names none, the export's metadata has no 'cohort' "
            "and the profile sets no default"
        )
    ordering = ordering_fields(ctx.profile)
    subtype_data_types = frozenset(ctx.profile.subtype_data_types)
    partition = (("cohort", cohort),)
    for member in sorted(archive.names):
        file_name = posixpath.basename(member)
        if file_name == "Manifest.csv":
            outcome.files_skipped.append({"file": member, "reason": "export manifest, not a data file"})
            continue
        try:
            parsed = export_file(file_name, subtype_data_types)
        except ValueError:
            raise InvalidArchive(f"{printable(member)}: a date of its name is no calendar date") from None
        if parsed is None:
            outcome.files_skipped.append({"file": member, "reason": f"name does not follow {EXPORT_FILE_GRAMMAR}"})
            continue
        dataset_id = parsed.dataset_id
        archive.check_dataset_member(member)
        shared: dict[str, object] = {
            "cohort": cohort,
            EXPORT_START_DATE: parsed.start_date,
            EXPORT_END_DATE: parsed.end_date,
            "sourcefile": member,
        }
        if parsed.subtype is not None and ctx.profile.subtype_column:
            shared[ctx.profile.subtype_column] = parsed.subtype
        rows = export_rows(ctx.profile, dataset_id, shared)  # the profile's field transforms, if any
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
            # several files (one per subtype) may give one dataset
            outcome.rows[dataset_id] = outcome.rows.get(dataset_id, 0) + count
            if rows.wide_integer_rows:
                outcome.wide_integer_rows[dataset_id] = (
                    outcome.wide_integer_rows.get(dataset_id, 0) + rows.wide_integer_rows
                )
