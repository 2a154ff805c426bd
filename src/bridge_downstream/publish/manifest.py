"""The manifest of one published version: the contract between the publish
step and everything that reads a publish (catalog, Synapse export, delivery).

Each dataset is published on its own. A version's ``manifest.json`` is
written after all its files, and ``published/<DatasetId>/CURRENT`` is
rewritten after the manifest: a version without a manifest is incomplete and
never current.

An incremental version lists every file of its history (10,000s at a
backfill's scale), and each publish reads the previous manifest and writes
its own. Its files are written with orjson, five times faster than json's
encoders for them, and read with orjson into files built by position, twice
as fast as before: a publish's cost should follow its new data, not its
history.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import operator
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import overload

import orjson

from bridge_downstream.common import layout
from bridge_downstream.common.spool import JsonLinesSpool
from bridge_downstream.common.storage import Storage


@dataclass(frozen=True, slots=True)
class PublishedFile:
    key: str  # relative to the pipeline root
    format: str  # "parquet" | "csv"
    size: int
    md5: str
    sha256: str
    rows: int
    partition: dict[str, str] = field(default_factory=dict)


class PublishedFiles:
    """A table's files as a publish describes them, one at a time: kept in a
    spool, not in memory (a backfill's table has 10,000s of files, ~0.5 KB
    each as objects), and read back in order each time they are iterated."""

    def __init__(self, files: Iterable[PublishedFile] = ()):
        self._spool = JsonLinesSpool(prefix="bridge-downstream-files-")
        for file in files:
            self.append(file)

    def append(self, file: PublishedFile) -> None:
        self._spool.append(_file_record(file))

    def __iter__(self) -> Iterator[PublishedFile]:
        return _published_files(self._spool)

    def __len__(self) -> int:
        return len(self._spool)


class FileLines(Sequence[PublishedFile]):
    """A table's files as the lines of a manifest that lists them (one JSON
    object each), parsed only when they are read: an incremental version
    carries most of its files from the previous manifest and writes their
    lines back as they were read (:func:`read_manifest_lines`)."""

    __slots__ = ("lines",)

    def __init__(self, lines: list[bytes]):
        self.lines = lines

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self) -> Iterator[PublishedFile]:
        return _published_files(map(orjson.loads, self.lines))

    @overload
    def __getitem__(self, index: int) -> PublishedFile: ...

    @overload
    def __getitem__(self, index: slice) -> list[PublishedFile]: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(_published_files(map(orjson.loads, self.lines[index])))
        return next(_published_files([orjson.loads(self.lines[index])]))


# The order of a table's files when its ``file_order`` says so: by format,
# then partition path (``increments.file_partition``), then key.
FILE_ORDER = ["format", "partition", "key"]


@dataclass
class PublishedTable:
    name: str
    dataset_id: str
    parent: str | None
    # [{"name": ..., "type": <Athena/Hive type>, "comment": <its JSON Schema description, where it has one>}]
    columns: list[dict[str, str]]
    partition_keys: list[str]
    rows: int
    files: list[PublishedFile] | PublishedFiles | FileLines = field(default_factory=list)
    # FILE_ORDER when the files are listed in that order (an incremental version's are), so that a
    # publish finds a partition's files by bisection; None: in no promised order
    file_order: list[str] | None = None

    def files_of(self, fmt: str) -> list[PublishedFile]:
        return [f for f in self.files if f.format == fmt]

    def location(self, version: str, fmt: str) -> str:
        return layout.table_prefix(self.dataset_id, version, fmt, self.name)

    def partition_folders(self, fmt: str) -> dict[tuple[str, ...], str]:
        """Each partition's folder (its values in ``partition_keys`` order ->
        the key prefix of its files). An incremental version carries
        partitions by reference: they lie in the folders of the versions
        that wrote them, not under :meth:`location`."""
        return {
            tuple(f.partition.get(k, "") for k in self.partition_keys): f.key.rsplit("/", 1)[0]
            for f in self.files_of(fmt)
        }

    def relative_key(self, file: PublishedFile) -> str:
        """``file``'s key below its table's folder (partition folders and
        name), whichever version's folder holds it."""
        marker = f"/{file.format}/{layout.key_segment(self.name)}/"
        return file.key.split(marker, 1)[1] if marker in file.key else file.key.rsplit("/", 1)[-1]


@dataclass
class PublishManifest:
    dataset_id: str
    version: str
    run_id: str
    created_at: str
    registry_version: str
    tables: dict[str, PublishedTable] = field(default_factory=dict)
    previous_version: str | None = None
    schema_id: str | None = None  # the JSON Schema the tables were planned from
    plan: dict | None = None  # the relationalize plan, as JSON
    # values that did not fit their columns, kept in the root rows' _rescued_data: path -> rows
    rescued_values: dict[str, int] = field(default_factory=dict)
    # the records of each export: read, dropped as duplicates or deleted, written (RECORD_COUNT_FIELDS)
    record_counts: list[dict] = field(default_factory=list)
    # how the version was made: {"mode": "full", "reason": ...} or {"mode": "incremental",
    # "previous_version", "new_part_files", "part_files_read", "partitions_rewritten"} (publish.increments)
    increment: dict = field(default_factory=dict)
    # the data-quality results of the version (bridge_downstream.quality; docs/quality.md, "Reports"):
    # passed, blocked, report (its HTML) and one result per expectation; None: not checked
    quality: dict | None = None

    @property
    def blocked_by_quality(self) -> bool:
        """A ``block`` expectation failed: the version was not made current."""
        return bool(self.quality and self.quality.get("blocked"))

    def _shallow(self) -> dict:
        """The manifest as JSON-ready dicts, its files left as objects: a
        backfill's version lists 10,000s of files, so they are turned into
        JSON one at a time as they are written, not copied all at once."""
        document = {f.name: getattr(self, f.name) for f in fields(self)}
        document["tables"] = {
            name: {f.name: getattr(table, f.name) for f in fields(table)} for name, table in self.tables.items()
        }
        return document

    def to_json(self) -> str:
        return json.dumps(self._shallow(), indent=2, sort_keys=True, default=_file_json)

    def store(self, storage: Storage, key: str) -> None:
        """Write the manifest to ``key``, encoded as it is written."""
        handle, path = tempfile.mkstemp(prefix="bridge-downstream-manifest-", suffix=".json")
        try:
            with os.fdopen(handle, "wb") as stream:
                _write_document(stream, self._shallow())
            storage.upload_file(path, key)
        finally:
            os.unlink(path)

    @classmethod
    def from_json(cls, text: str | bytes) -> PublishManifest:
        raw = _parse_document(text)
        tables = {}
        for name, table in raw.pop("tables", {}).items():
            files = list(_published_files(table.pop("files", [])))
            tables[name] = PublishedTable(files=files, **table)
        return cls(tables=tables, **raw)


def _parse_document(text: str | bytes) -> dict:
    """A manifest's JSON as ``json.loads`` reads it. orjson reads the same
    values, faster, but refuses some that ``json.dumps`` writes -- NaN and
    Infinity in a plan or a quality result -- and reads an integer beyond
    64 bits as a double: such a document is read by ``json``. (Not
    ``jsoncodec.parse``'s test for a run of 19 digits: the hex digests of a
    large manifest hold such runs, and it would read nearly each one twice.)"""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
    tables = document.get("tables", {})
    if _holds_widened_integer([value for name, value in document.items() if name != "tables"]) or any(
        _holds_widened_integer([value for name, value in table.items() if name != "files"]) for table in tables.values()
    ):
        return json.loads(text)
    return document


def _holds_widened_integer(value) -> bool:
    """Whether ``value`` holds a double orjson may have read from an integer
    literal: it keeps every integer from -2**63 to 2**64 exact. Files are
    not searched -- their numbers are byte sizes and row counts -- so the
    check costs nothing per file of the history."""
    if isinstance(value, float):
        return abs(value) >= 2**63 and value.is_integer()
    if isinstance(value, dict):
        return any(_holds_widened_integer(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_widened_integer(item) for item in value)
    return False


# recover's record-count events (READ, DROP_DUPLICATES, DROP_DELETED_SAMPLES,
# WRITE), as the records each step removed: read = the three others' sum.
RECORD_COUNT_FIELDS = ("data_type", "export_end_date", "read", "duplicates_dropped", "deleted_dropped", "written")


def record_counts_csv(counts: list[dict]) -> bytes:
    """The record counts of a version as CSV, one row per data type and export end date."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RECORD_COUNT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(counts)
    return buffer.getvalue().encode()


def _write_document(stream, document: dict) -> None:
    """``document`` as :meth:`PublishManifest.to_json` spells it, but each file
    on one line, compact and in UTF-8, encoded by orjson, to a binary
    ``stream``: an incremental version lists every file of its history, and
    json's encoders spent more time on them than the rest of the publish."""

    def write(text: str) -> None:
        stream.write(text.encode())

    def members(value: dict, indent: str, write_value) -> None:
        write("{")
        for i, (name, item) in enumerate(sorted(value.items())):
            write(("," if i else "") + f"\n{indent}  {json.dumps(name)}: ")
            write_value(name, item, indent + "  ")
        write(f"\n{indent}}}" if value else "}")

    def plain(_, value, indent: str) -> None:
        write(json.dumps(value, indent=2, sort_keys=True).replace("\n", "\n" + indent))

    def table(name, value, indent: str) -> None:
        if name != "files":
            return plain(name, value, indent)
        lines = value.lines if isinstance(value, FileLines) else [file_line(f) for f in value]  # carried as read
        if not lines:
            return write("[]")
        separator = f"\n{indent}  ".encode()
        # joined at once: a version carries every file of the history
        stream.write(b"[" + separator + (b"," + separator).join(lines) + f"\n{indent}]".encode())

    def top(name, value, indent: str) -> None:
        if name != "tables":
            return plain(name, value, indent)
        members(value, indent, lambda _, entry, inner: members(entry, inner, table))

    members(document, "", top)
    write("\n")


def _file_record(file: PublishedFile) -> dict:
    """``file`` as JSON, its fields in name order. Spelled out, not read from
    ``dataclasses.fields``: that loop cost more than encoding the file."""
    return {
        "format": file.format,
        "key": file.key,
        "md5": file.md5,
        "partition": file.partition,
        "rows": file.rows,
        "sha256": file.sha256,
        "size": file.size,
    }


def file_line(file: PublishedFile) -> bytes:
    """``file`` as a manifest's line lists it (:class:`FileLines`)."""
    return orjson.dumps(_file_record(file), option=orjson.OPT_SORT_KEYS)  # sorts the partition's names


# A file's record (:func:`_file_record`) as PublishedFile's positional
# arguments: binding them costs a third less than binding keywords, and a
# manifest read builds one file per file of the history.
_file_arguments = operator.itemgetter(*(f.name for f in fields(PublishedFile)))


def _published_files(records: Iterable[dict]) -> Iterator[PublishedFile]:
    return itertools.starmap(PublishedFile, map(_file_arguments, records))


def _file_json(value):
    if isinstance(value, PublishedFile):
        return _file_record(value)
    if isinstance(value, PublishedFiles | FileLines):
        return _StreamedList(value)
    raise TypeError(f"{type(value).__name__} is not part of a manifest")


class _StreamedList(list):
    """Spooled files handed to ``json.dump`` as a list it reads one item at a
    time: the encoder only tests a list for emptiness and iterates it, so
    the files are never all in memory at once. That is json's Python
    encoder, which ``indent`` selects; the C one (no indent) reads a list's
    storage directly and would see no files -- the manifest tests compare
    the two documents."""

    def __init__(self, items: PublishedFiles | FileLines):
        super().__init__()
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self._items)


def current_version(storage: Storage, dataset_id: str) -> str | None:
    pointer = layout.current_pointer_key(dataset_id)
    if not storage.exists(pointer):
        return None
    return json.loads(storage.read_bytes(pointer))["version"]


def read_manifest(storage: Storage, dataset_id: str, version: str) -> PublishManifest:
    return PublishManifest.from_json(storage.read_bytes(layout.manifest_key(dataset_id, version)))


def read_manifest_lines(storage: Storage, dataset_id: str, version: str) -> PublishManifest:
    """:func:`read_manifest`, each table's files kept as their lines
    (:class:`FileLines`): a publish reads the previous manifest, which lists
    every file of the history, and carries most of them without reading them.
    A manifest not written one file per line is read in full."""
    data = storage.read_bytes(layout.manifest_key(dataset_id, version))
    rest, groups = _split_file_lines(data)
    raw = _parse_document(rest)
    tables = raw.pop("tables", {})
    # the tables are written in name order, each one's files between its "files" brackets
    if len(groups) != len(tables) or any(table.get("files") for table in tables.values()):
        return PublishManifest.from_json(data)
    published = {}
    for (name, table), lines in zip(sorted(tables.items()), groups):
        table.pop("files", None)
        published[name] = PublishedTable(files=FileLines(lines), **table)
    return PublishManifest(tables=published, **raw)


# How :func:`_write_document` opens a table's files (a table's fields are
# indented six spaces) and starts each file's line (JSON written indented
# never starts a line with an object's first member).
_FILES_OPENING = b'      "files": ['
_FILE_LINE_START = b'{"format"'


_FILE_SEPARATOR = b",\n        "  # between two file lines (indented eight spaces)
_FILES_CLOSING = b"\n      ]"


def _split_file_lines(data: bytes) -> tuple[bytes, list[list[bytes]]]:
    """The manifest without its file lines, and each table's file lines in
    order, found with ``bytes.find`` and split at once (a manifest lists every
    file of the history). A table whose files are not one per line gives a
    group of no lines while its document still holds files, which
    :func:`read_manifest_lines` reads in full."""
    rest: list[bytes] = []
    groups: list[list[bytes]] = []
    start = 0
    opening = b"\n" + _FILES_OPENING
    while (found := data.find(opening, start)) >= 0:
        body_start = found + len(opening)
        rest.append(data[start:body_start])
        start = body_start
        if data.startswith(b"]", body_start):  # "[]": a table without files
            groups.append([])
            continue
        body_end = data.find(_FILES_CLOSING, body_start)
        body = data[body_start:body_end]
        lines = body[len(_FILE_SEPARATOR) - 1 :].split(_FILE_SEPARATOR) if body_end >= 0 else []
        # each line opens a file and holds no line break of its own; else it is read in full
        if not body.startswith(b"\n        " + _FILE_LINE_START) or body.count(b"\n") != len(lines):
            groups.append([])
            continue
        groups.append(lines)
        start = body_end
    rest.append(data[start:])
    return b"".join(rest), groups


# A file as :func:`_write_document` writes it: one line, its fields in name
# order; compact (orjson) or, in manifests written before, with json's spaces.
_FILE_LINE_KEY = re.compile(rb'\{"format": ?"[^"\\]*", ?"key": ?("[^"\\]*(?:\\.[^"\\]*)*")')


def listed_file_keys(storage: Storage, dataset_id: str, version: str) -> set[str]:
    """The key of every file ``version``'s manifest lists (its own and those it carries)."""
    return {key.decode() for key in listed_file_key_bytes(storage, dataset_id, version)}


def listed_file_key_bytes(storage: Storage, dataset_id: str, version: str) -> set[bytes]:
    """:func:`listed_file_keys` as UTF-8 bytes, read from the manifest's lines:
    pruning compares the lists of several manifests of the whole history per
    publish, and building their files, or even decoding every key, cost more
    than the rest of it. A manifest written otherwise is read in full."""
    data = storage.read_bytes(layout.manifest_key(dataset_id, version))
    keys = file_line_keys([data])
    if keys:
        return keys
    return {file.key.encode() for table in PublishManifest.from_json(data).tables.values() for file in table.files}


def file_line_keys(chunks: Iterable[bytes]) -> set[bytes]:
    """The keys of the file lines in ``chunks`` (a manifest, or file lines), as UTF-8."""
    found = {text for chunk in chunks for text in _FILE_LINE_KEY.findall(chunk)}
    # a key with no escape is its own UTF-8 between the quotes
    return {text[1:-1] if b"\\" not in text else json.loads(text).encode() for text in found}


def published_datasets(storage: Storage) -> list[str]:
    """Datasets that have a current version, in name order."""
    prefix = layout.PUBLISHED_PREFIX + "/"
    found = set()
    for info in storage.list(prefix):
        rest = info.key[len(prefix) :]
        if rest.endswith("/CURRENT") and rest.count("/") == 1:
            found.add(layout.unescape_path_name(rest.split("/", 1)[0]))  # the id, not its folder name
    return sorted(found)


def read_current_manifests(storage: Storage) -> list[PublishManifest]:
    """The current manifest of every published dataset."""
    manifests = []
    for dataset_id in published_datasets(storage):
        version = current_version(storage, dataset_id)
        if version is not None:
            manifests.append(read_manifest(storage, dataset_id, version))
    return manifests
