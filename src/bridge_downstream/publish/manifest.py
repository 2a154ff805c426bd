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
    lines back as they were read (:func:`read_manifest_lines`). Held as
    given: a list of lines, the manifest's bytes between the table's ``files``
    brackets (:attr:`body`, the lines joined by :data:`FILE_SEPARATOR`), or
    runs of such lines (``chunks``, views of the previous manifest's bytes and
    new lines), which a delta slices and writes back without splitting or
    copying the history's lines."""

    __slots__ = ("_body", "_chunks", "_lines")

    def __init__(
        self,
        lines: list[bytes] | None = None,
        *,
        body: bytes | None = None,
        chunks: list[bytes | memoryview] | None = None,
    ):
        self._lines = lines
        self._body = body
        self._chunks = chunks

    @property
    def lines(self) -> list[bytes]:
        if self._lines is None:
            self._lines = self.body.split(FILE_SEPARATOR) if self.body else []
        return self._lines

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = FILE_SEPARATOR.join(self._chunks if self._chunks is not None else self.lines)
        return self._body

    @property
    def chunks(self) -> list[bytes | memoryview]:
        """Runs of whole lines, in order, to be joined by :data:`FILE_SEPARATOR`."""
        if self._chunks is not None:
            return self._chunks
        return [self.body] if self.body else []

    def __len__(self) -> int:
        if self._lines is None:
            return self.body.count(FILE_SEPARATOR) + 1 if self.body else 0
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


# Between two of a table's file lines in a manifest (:func:`_write_document`
# indents them eight spaces). A line is compact JSON: it never holds a line break.
FILE_SEPARATOR = b",\n        "


# The order of every table's files in an incremental version, which its
# ``increment`` names (``"file_order"``): by format, then partition path
# (``increments.file_partition``), then key. Named there, not in a new field
# of the tables: a reader of an earlier release reads the manifest still.
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
        """Write the manifest to ``key``, encoded as it is written to a
        temporary file that becomes the object (no copy on a local output):
        a version lists every file of its history."""
        handle, path = tempfile.mkstemp(prefix="bridge-downstream-manifest-", suffix=".json")
        try:
            with os.fdopen(handle, "wb") as stream:
                _write_document(stream, self._shallow())
            storage.move_in(path, key)
        finally:
            if os.path.exists(path):
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
        lines = value if isinstance(value, FileLines) else FileLines([file_line(f) for f in value])
        line_break = f"\n{indent}  ".encode()
        # the carried lines as read, in a few large writes: a version carries every file of the history
        chunks = lines.chunks if b"," + line_break == FILE_SEPARATOR else [(b"," + line_break).join(lines.lines)]
        if not any(chunks):
            return write("[]")
        stream.write(b"[" + line_break)
        for i, chunk in enumerate(chunks):
            if i:
                stream.write(FILE_SEPARATOR)
            stream.write(chunk)
        write(f"\n{indent}]")

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
    """:func:`read_manifest`, each table's files kept as the manifest's bytes
    (:class:`FileLines`): a publish reads the previous manifest, which lists
    every file of the history, and carries most of them without reading them.
    A manifest not written one file per line is read in full."""
    data = storage.read_bytes(layout.manifest_key(dataset_id, version))
    rest, bodies = _split_file_lines(data)
    raw = _parse_document(rest)
    tables = raw.pop("tables", {})
    # the tables are written in name order, each one's files between its "files" brackets
    if len(bodies) != len(tables) or None in bodies or any(table.get("files") for table in tables.values()):
        return PublishManifest.from_json(data)
    published = {}
    for (name, table), body in zip(sorted(tables.items()), bodies):
        table.pop("files", None)
        published[name] = PublishedTable(files=FileLines(body=body), **table)
    return PublishManifest(tables=published, **raw)


# How :func:`_write_document` opens a table's files (a table's fields are
# indented six spaces) and starts each file's line (JSON written indented
# never starts a line with an object's first member).
_FILES_OPENING = b'      "files": ['
_FILE_LINE_START = b'{"format"'
_FILES_CLOSING = b"\n      ]"


def _files_closing(data: bytes, start: int) -> int:
    """``data.find(_FILES_CLOSING, start)``, by the bracket it ends with: each
    file line starts as the closing does (a line break and spaces), which
    makes the search for all of it crawl over a manifest's megabytes of lines."""
    bracket = data.find(b"]", start)
    while bracket >= 0 and not data.startswith(_FILES_CLOSING, bracket + 1 - len(_FILES_CLOSING)):
        bracket = data.find(b"]", bracket + 1)
    return bracket + 1 - len(_FILES_CLOSING) if bracket >= 0 else -1


def _split_file_lines(data: bytes) -> tuple[bytes, list[bytes | None]]:
    """The manifest without its file lines, and each table's file lines in
    order, as the bytes between its brackets less the first line break
    (:attr:`FileLines.body`), found with ``bytes.find``: a manifest lists
    every file of the history. None for a table whose files are not one per
    line (its document still holds them: :func:`read_manifest_lines` reads it in full)."""
    rest: list[bytes] = []
    bodies: list[bytes | None] = []
    start = 0
    opening = b"\n" + _FILES_OPENING
    first_break = FILE_SEPARATOR[1:]
    while (found := data.find(opening, start)) >= 0:
        body_start = found + len(opening)
        rest.append(data[start:body_start])
        start = body_start
        if data.startswith(b"]", body_start):  # "[]": a table without files
            bodies.append(b"")
            continue
        body_end = _files_closing(data, body_start)
        body = data[body_start + len(first_break) : body_end]
        # each line opens a file (json's indented objects open on a line of their own)
        if body_end < 0 or not data.startswith(first_break + _FILE_LINE_START, body_start):
            bodies.append(None)
            continue
        bodies.append(body)
        start = body_end
    rest.append(data[start:])
    return b"".join(rest), bodies


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
