"""The ingest stage: upload archives -> validated, schema-bucketed NDJSON datasets.

Every input archive ends in exactly one place: ``processed`` (its rows are in
datasets), ``invalid`` (sent to the invalid sink with the reason) or
``skipped`` (with the reason). A bad archive never stops the batch.

``process_batch`` is the unit of parallel work: the local command runs one
per worker process, the Glue job one per Spark partition. ``run_ingest``
orchestrates a whole run on one machine.
"""

from __future__ import annotations

import array
import copy
import csv
import functools
import gc
import hashlib
import io
import itertools
import json
import os
import posixpath
import re
import shutil
import sys
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

from . import jsoncodec
from .archive import ArchiveError, ArchiveLimits, SafeArchive, decode_utf8, parse_json_document
from .ingest_outcomes import (
    INVALID,
    PROCESSED,
    SKIPPED,
    IngestLedger,
    OutcomeSpool,
    SpoolState,
    TaskResult,
    finish_run,
    load_ledger,
)
from .profiles import Profile
from .registry import SchemaRegistry
from .resolution import resolve_file, self_referenced_schemas
from .sinks import InvalidSink
from .spool import read_lines
from .storage import Storage, UnreadableMetadata
from .validation import (
    ValidationResult,
    accepted_messages,
    compile_validators,
    validate_document,
)
from .writer import PartWriter, StagedParts

EXPORT_WRITE_BATCH = 4096  # export lines written at once


@dataclass(frozen=True, slots=True)
class ArchiveInput:
    """One archive to ingest: where it is, and what Bridge said about it."""

    storage: Storage
    key: str
    source_bucket: str | None = None
    raw_folder_id: str | None = None
    metadata: dict[str, str] | None = None  # None: read the object's metadata

    @property
    def source(self) -> str:
        return self.storage.uri(self.key)


class ArchiveListing(Sequence):
    """The archives of one storage, in key order, spooled to an unnamed
    temporary file instead of memory: a backfill lists 100,000s of archives,
    and the run (its parent process and its workers) then holds nothing per
    archive. Workers forked from the process that listed read the same file,
    so all of them see one snapshot of the folder.

    A slice (``listing[index::count]``, a worker's deterministic share) is a
    view over the same file: nothing is copied. Reading one starts at the
    nearest of the file offsets noted every ``MARK_EVERY`` keys, not at the
    file's start: a long task runs in many segments (``ARCHIVES_PER_PROCESS``),
    and each would otherwise read all the keys before its own."""

    MARK_EVERY = 4096

    def __init__(self, storage: Storage, infos: Iterable):
        """``infos``: :class:`storage.ObjectInfo` (or keys) in key order, as
        :meth:`Storage.list` yields them."""
        self.storage = storage
        self._file = tempfile.TemporaryFile(prefix="bridge-downstream-listing-")  # noqa: SIM115 - lives as long as the listing
        self.total_bytes = 0  # of the archives, when sizes are given
        self._marks = array.array("q")  # file offset of key k * MARK_EVERY: 8 bytes per 4096 archives
        count, offset, previous = 0, 0, None
        for info in infos:
            key = info if isinstance(info, str) else info.key
            if "\n" in key:
                raise ValueError(f"an archive key contains a newline: {key!r}")
            if previous is not None and key <= previous:
                raise ValueError(f"archive keys must come in key order, once each: {key!r} after {previous!r}")
            if count % self.MARK_EVERY == 0:
                self._marks.append(offset)
            offset += self._file.write(key.encode("utf-8") + b"\n")
            self.total_bytes += 0 if isinstance(info, str) else info.size
            count, previous = count + 1, key
        self._file.flush()
        self._range = range(count)

    @classmethod
    def of_storage(cls, storage: Storage, suffixes: tuple[str, ...], prefix: str = "") -> ArchiveListing:
        """Every object under ``prefix`` whose name ends in one of ``suffixes`` (any case)."""
        return cls(storage, (info for info in storage.list(prefix) if info.key.lower().endswith(suffixes)))

    def __len__(self) -> int:
        return len(self._range)

    def __iter__(self) -> Iterator[ArchiveInput]:
        wanted = self._range
        if not wanted:
            return
        step = wanted.step
        position, last = wanted.start, wanted[-1]
        mark = position // self.MARK_EVERY
        # Forked workers share the file: it is read at positions (see :mod:`spool`).
        lines = read_lines(self._file.fileno(), start=self._marks[mark])
        for index, line in enumerate(lines, start=mark * self.MARK_EVERY):
            if index == position:
                yield ArchiveInput(self.storage, line.decode("utf-8"))
                if position == last:
                    return
                position += step

    def __getitem__(self, position):
        if isinstance(position, slice):
            if self._range[position].step < 0:
                raise ValueError("a listing is read in key order: no negative steps")
            view = copy.copy(self)
            view._range = self._range[position]
            return view
        at = self._range.index(self._range[position])
        return next(iter(self[at : at + 1]))

    def close(self) -> None:
        self._file.close()


@dataclass(slots=True)
class ArchiveOutcome:
    source: str
    status: str
    reason: str | None = None
    record_id: str | None = None
    identity: str | None = None
    rows: dict[str, int] = field(default_factory=dict)
    files_skipped: list[dict[str, str]] = field(default_factory=list)
    invalid_entry: dict | None = None


@dataclass(frozen=True)
class IngestContext:
    registry: SchemaRegistry
    profile: Profile
    limits: ArchiveLimits = ArchiveLimits()
    app_id: str | None = None  # the pipeline's app, when records do not say
    already_ingested: IngestLedger = field(default_factory=IngestLedger)
    # Archives read ahead on threads while one is processed: on S3 a GET waits
    # far longer than the archive takes to process. Memory: up to this many
    # archives (each within ``limits``) per worker. 0 reads each when it is due.
    prefetch: int = 0


def default_prefetch(profile: Profile) -> int:
    """For remote storage: uploads are small, so read several ahead; exports are few and large."""
    return 8 if profile.kind == "bridge-archive" else 1


# An archive up to this size is read into memory once, then hashed and
# unzipped from there: one read instead of dozens of small seeks and reads
# through zipfile (most uploads are a few KB). Larger ones are streamed.
IN_MEMORY_ARCHIVE_BYTES = 8 << 20


def in_memory_if_small(stream: BinaryIO) -> BinaryIO:
    """``stream`` itself, or (when it holds at most IN_MEMORY_ARCHIVE_BYTES)
    an in-memory copy of it; either way positioned at its start."""
    if isinstance(stream, io.BytesIO):
        return stream
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    return io.BytesIO(stream.read(size)) if size <= IN_MEMORY_ARCHIVE_BYTES else stream


def archive_identity(stream: BinaryIO, metadata: dict[str, str]) -> str:
    """The archive's bytes and its metadata, hashed; the stream is left at its start."""
    if isinstance(stream, io.BytesIO):
        digest = hashlib.sha256(stream.getbuffer())
    else:
        digest = hashlib.sha256()
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
        stream.seek(0)
    # The ledger holds these digests: the metadata's encoding must never change.
    digest.update(b"\0" + _METADATA_JSON(metadata).encode())
    return digest.hexdigest()


# json.dumps(metadata, sort_keys=True), without making an encoder per archive.
_METADATA_JSON = json.JSONEncoder(sort_keys=True).encode


def parse_uploaded_on(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class InvalidArchive(Exception):
    """Ends an archive as invalid; ``errors`` maps file names to messages."""

    def __init__(self, reason: str, errors: dict[str, list[str]] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or {}


# -- Bridge archives (MTB) -----------------------------------------------------


def _ingest_bridge_archive(archive: SafeArchive, metadata: dict[str, str], ctx: IngestContext, writer: PartWriter, outcome: ArchiveOutcome) -> None:
    profile, registry = ctx.profile, ctx.registry
    record_id = metadata["recordid"]
    assessment_id = metadata["assessmentid"]
    try:
        revision = int(metadata["assessmentrevision"])
    except ValueError:
        raise InvalidArchive(f"Bridge metadata assessmentrevision {metadata['assessmentrevision']!r} is not an integer")
    try:
        uploaded = parse_uploaded_on(metadata["uploadedon"])
    except ValueError:
        raise InvalidArchive(f"Bridge metadata uploadedon {metadata['uploadedon']!r} is not an ISO 8601 timestamp")
    app_id = metadata.get("appid") or ctx.app_id or profile.app_id or ""
    # metadata.json names the schemas of the other files, and is a data file itself: read once.
    metadata_document = archive.read_json("metadata.json") if archive.has("metadata.json") else None
    self_refs = self_referenced_schemas(metadata_document)
    validate = not registry.is_legacy_assessment(assessment_id, revision)
    partition = (("assessmentid", assessment_id), ("year", uploaded.year), ("month", uploaded.month), ("day", uploaded.day))
    enrichment = {
        "assessmentid": assessment_id,
        "year": uploaded.year,
        "month": uploaded.month,
        "day": uploaded.day,
        "recordid": record_id,
        "uploadedon": metadata["uploadedon"],
    }
    if metadata.get("exportedon"):
        enrichment["exportedon"] = metadata["exportedon"]
    errors: dict[str, list[str]] = {}

    def accepted(member: str) -> tuple[str, ...]:  # asked for only when a file is not plainly valid
        return accepted_messages(
            registry.rules.accepted_deviations,
            member,
            app_id=app_id,
            client_info=metadata.get("clientinfo", ""),
            assessment_id=assessment_id,
            file_aliases=registry.rules.file_aliases,
        )

    for member in sorted(archive.names):
        file_name = posixpath.basename(member)
        resolution = resolve_file(
            registry, file_name=file_name, app_id=app_id, assessment_id=assessment_id, revision=revision, self_references=self_refs
        )
        if resolution.skipped:
            # Interned: one string per distinct name/reason, also after pickling to the parent.
            outcome.files_skipped.append({"file": sys.intern(member), "reason": sys.intern(resolution.reason)})
            continue
        document = metadata_document if member == "metadata.json" else archive.read_json(member)
        if validate and resolution.schema_url and registry.schema(resolution.schema_url) is not None:
            messages = validate_document(registry, resolution.schema_url, document, functools.partial(accepted, member))
            if messages:
                errors[member] = messages
                continue
        if resolution.dataset_id in profile.record_metadata_datasets:
            extra = {**enrichment, **metadata, "sourcefile": member}
        else:
            extra = {**enrichment, "sourcefile": member}
        elements = document if isinstance(document, list) else [document]
        # One write per file, not per row.
        writer.write_block(resolution.dataset_id, partition, jsoncodec.Rows(extra).block(elements), len(elements))
        outcome.rows[resolution.dataset_id] = outcome.rows.get(resolution.dataset_id, 0) + len(elements)
    if errors:
        files = ", ".join(sorted(errors))
        raise InvalidArchive(f"failed validation: {files}", errors)


# -- NDJSON exports (recover) --------------------------------------------------

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
        raise InvalidArchive("export dates unknown: no Manifest.csv with ExportStartDate/ExportEndDate and no dated data file")
    iso = lambda d: f"{d[:4]}-{d[4:6]}-{d[6:]}"
    return {"exportstartdate": iso(min(starts)), "exportenddate": iso(max(ends))}


def _ingest_export(archive: SafeArchive, metadata: dict[str, str], ctx: IngestContext, writer: PartWriter, outcome: ArchiveOutcome) -> None:
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
                {"file": member, "reason": "name does not follow {DataType}_[{SubType}_][Deleted_]{YYYYMMDD}[-{YYYYMMDD}].json"}
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
                raise InvalidArchive(f"{member} line {number + 1} is not a JSON object", {member: [f"line {number + 1} is not a JSON object"]})
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


# -- one archive ---------------------------------------------------------------

PROCESSORS: dict[str, Callable] = {"bridge-archive": _ingest_bridge_archive, "ndjson-export": _ingest_export}


def _invalid_entry(inp: ArchiveInput, metadata: dict[str, str], ctx: IngestContext, reason: str, errors: dict, identity: str) -> dict:
    result = ValidationResult(
        assessment_id=metadata.get("assessmentid", ""),
        assessment_revision=metadata.get("assessmentrevision", ""),
        app_id=metadata.get("appid") or ctx.app_id or ctx.profile.app_id or "",
        record_id=metadata.get("recordid") or posixpath.basename(inp.key),
        errors=errors,
    )
    return {
        "source_bucket": inp.source_bucket,
        "source_key": inp.key,
        "source": inp.source,
        "raw_folder_id": inp.raw_folder_id,
        "validation_result": result.to_json(),
        "reason": reason,
        "identity": identity,
        "profile": ctx.profile.name,
        "registry_version": ctx.registry.version,
        "metadata": metadata,
    }


def open_archive(inp: ArchiveInput) -> tuple[Any, dict[str, str]]:
    """The archive's stream and its Bridge metadata (from the input, or the
    object's), with lower-case names and string values."""
    if inp.metadata is None:
        return inp.storage.open_read_with_metadata(inp.key)  # the storage's are
    return inp.storage.open_read(inp.key), {str(k).lower(): str(v) for k, v in inp.metadata.items()}


def prefetched(inputs: Iterable[ArchiveInput], depth: int) -> Iterator[tuple[ArchiveInput, Future | None]]:
    """The inputs in order, each with its archive being opened up to ``depth``
    archives ahead on threads (None: open it when due). A failed read is
    raised by ``Future.result()``, for the archive it belongs to."""
    if depth <= 0:
        for inp in inputs:
            yield inp, None
        return
    iterator = iter(inputs)
    with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="archive-prefetch") as pool:
        pending = deque((inp, pool.submit(open_archive, inp)) for inp in itertools.islice(iterator, depth))
        try:
            while pending:
                inp, future = pending.popleft()
                following = next(iterator, None)
                if following is not None:
                    pending.append((following, pool.submit(open_archive, following)))
                yield inp, future
        finally:
            for _, future in pending:  # stopped early: close what was read ahead
                if not future.cancel() and future.exception() is None:
                    future.result()[0].close()


def ingest_archive(inp: ArchiveInput, ctx: IngestContext, writer: PartWriter, opening: Future | None = None) -> ArchiveOutcome:
    source = inp.source  # a path computation: once per archive
    outcome = ArchiveOutcome(source=source, status=PROCESSED)
    metadata: dict[str, str] = {}
    identity = None
    token = writer.checkpoint()

    def invalid(reason: str, errors: dict | None = None) -> ArchiveOutcome:
        writer.rollback(token)
        outcome.status, outcome.reason, outcome.rows = INVALID, reason, {}
        # An archive that could not be read is known by its source.
        known_as = identity or hashlib.sha256(source.encode()).hexdigest()
        outcome.invalid_entry = _invalid_entry(inp, metadata, ctx, reason, errors or {"archive": [reason]}, known_as)
        return outcome

    try:
        opened, metadata = opening.result() if opening is not None else open_archive(inp)
        outcome.record_id = metadata.get("recordid")
        with opened:
            stream = in_memory_if_small(opened)
            identity = outcome.identity = archive_identity(stream, metadata)
            if identity in ctx.already_ingested:
                outcome.status, outcome.reason = SKIPPED, "already ingested: the same archive and metadata are in the ingest ledger"
                return outcome
            if not metadata:
                return invalid(
                    "no Bridge metadata: expected the S3 object's metadata, or locally a sidecar file "
                    f"{posixpath.basename(inp.key)}.metadata.json"
                )
            missing = [name for name in ctx.profile.required_metadata if not metadata.get(name)]
            if missing:
                return invalid(f"Bridge metadata is incomplete: missing {', '.join(missing)}")
            with SafeArchive(stream, ctx.limits, source) as archive:
                PROCESSORS[ctx.profile.kind](archive, metadata, ctx, writer, outcome)
    except ArchiveError as error:
        return invalid(str(error), {error.member or "archive": [str(error)]})
    except InvalidArchive as error:
        return invalid(error.reason, error.errors or None)
    except FileNotFoundError as error:
        return invalid(f"archive not found: {error}")
    except UnreadableMetadata as error:
        return invalid(f"unreadable Bridge metadata: {error}")
    if not outcome.rows:
        writer.rollback(token)
        outcome.status = SKIPPED
        skipped = "; ".join(f"{f['file']}: {f['reason']}" for f in outcome.files_skipped) or "no files"
        outcome.reason = f"no file of the archive maps to a dataset ({skipped})"
        return outcome
    writer.commit(identity)
    return outcome


@dataclass
class TaskState:
    """A task's unpublished part files and unfinished outcome spool, handed
    from the worker process that ran one segment of it to the next."""

    parts: StagedParts
    outcomes: SpoolState


def process_batch(
    task: int,
    inputs: Iterable[ArchiveInput],
    ctx: IngestContext,
    output: Storage,
    run_id: str,
    on_archive: Callable[[int], None] | None = None,
    progress_every: int = 1,
    *,
    scratch: str | None = None,
    resume: TaskState | None = None,
    last: bool = True,
) -> TaskResult | TaskState:
    """Ingest archives one after another into this task's part files; their
    outcomes go to the task's spool, not to memory. ``inputs`` come in source
    order (the spools are merged in that order; the spool checks it).

    A task can run in several processes in turn, one segment of its
    archives each: an earlier segment (``last=False``) hands its part files
    and spool over (a :class:`TaskState`, the next one's ``resume``); the
    last publishes the part files and stores the spool (a
    :class:`TaskResult`). ``scratch``: the folder for the task's local files
    (a temporary one if not given)."""
    if resume:
        spool = OutcomeSpool(task, run_id, resume=resume.outcomes)
        writer = PartWriter.taking_over(task, output, resume.parts, on_published=spool.add_part)
    else:
        spool = OutcomeSpool(task, run_id, directory=scratch and _scratch_folder(scratch, "outcomes"))
        writer = PartWriter(task, output, on_published=spool.add_part, staging_dir=scratch and _scratch_folder(scratch, "parts"))
    try:
        done = 0
        for inp, opening in prefetched(inputs, ctx.prefetch):
            spool.add(ingest_archive(inp, ctx, writer, opening))
            done += 1
            if on_archive and done >= progress_every:
                on_archive(done)
                done = 0
        if on_archive and done:
            on_archive(done)
        if not last:
            return TaskState(writer.hand_over(), spool.hand_over())
        writer.publish()
        return spool.finish(output)
    finally:
        writer.close()
        spool.close()


def _scratch_folder(scratch: str, name: str) -> str:
    path = os.path.join(scratch, name)
    os.makedirs(path, exist_ok=True)
    return path


# -- a run ---------------------------------------------------------------------


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


_WORKER_CONTEXT: dict[str, Any] = {}
PROGRESS_EVERY = 16  # archives per progress message from a worker
# A process keeps what its allocators once held, a few MiB more over tens of
# thousands of archives. A task therefore runs in a new process every this
# many archives, handing its part files and spool on (TaskState): a backfill
# has the memory of a short batch, and the same part files.
ARCHIVES_PER_PROCESS = 4096


def _run_worker(task: int, inputs, run_id: str, messages, scratch: str, resume: TaskState | None, last: bool, report_progress: bool) -> None:
    """One worker process: one segment of a task's archives, into the task's
    part files and outcome spool; the parent hears only progress (when it
    shows it) and, at the end, the task's tally or the state the next
    segment's process goes on from."""
    try:
        ctx, output = _WORKER_CONTEXT["ctx"], _WORKER_CONTEXT["output"]
        # A message wakes the queue's feeder thread, which then competes with
        # the worker for the interpreter: none is sent when nobody listens.
        report = (lambda done: messages.put(("progress", task, done))) if report_progress else None
        outcome = process_batch(task, inputs, ctx, output, run_id, on_archive=report, progress_every=PROGRESS_EVERY,
                                scratch=scratch, resume=resume, last=last)
        messages.put(("result" if last else "handover", task, outcome))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which fails the run
        import traceback

        messages.put(("error", task, f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))


def split_tasks(inputs: Sequence[ArchiveInput], workers: int) -> list[list[ArchiveInput]]:
    """Deterministic slices of the inputs in source order, one per worker:
    the same archives always give the same part files, and every partition
    gets one part file per worker (many small files slow every reader)."""
    count = max(1, min(len(inputs), workers))
    ordered = inputs if isinstance(inputs, ArchiveListing) else sorted(inputs, key=lambda i: i.source)
    return [ordered[i::count] for i in range(count)]


def _run_parallel(tasks: list[list[ArchiveInput]], ctx: IngestContext, output: Storage, run_id: str,
                  progress: Callable[[int], None] | None, archives_per_process: int) -> list[TaskResult]:
    import multiprocessing
    import queue

    fork = multiprocessing.get_context("fork")
    messages = fork.Queue()
    _WORKER_CONTEXT.update(ctx=ctx, output=output)
    compile_validators(ctx.registry)
    # The workers share the parent's inputs, registry and compiled validators
    # copy-on-write; frozen, the garbage collector does not touch (and so copy)
    # their pages in every worker.
    gc.freeze()
    # The run's local files live here, so they go even if a worker is killed.
    scratch = tempfile.mkdtemp(prefix="bridge-downstream-ingest-")
    segments = [deque(task_inputs[start : start + archives_per_process] for start in range(0, len(task_inputs), archives_per_process))
                for task_inputs in tasks]
    running: dict[int, Any] = {}

    def start_next_segment(task: int, resume: TaskState | None) -> None:
        inputs = segments[task].popleft()
        process = fork.Process(target=_run_worker, name=f"ingest-task-{task}", daemon=True,
                               args=(task, inputs, run_id, messages, os.path.join(scratch, f"task-{task:05d}"),
                                     resume, not segments[task], progress is not None))
        process.start()
        running[task] = process

    results: list[TaskResult] = []
    try:
        for task in range(len(tasks)):
            start_next_segment(task, None)
        while len(results) < len(tasks):
            try:
                kind, task, payload = messages.get(timeout=1.0)
            except queue.Empty:
                dead = [t for t, process in sorted(running.items()) if process.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"ingest worker {dead[0]} died (exit code {running[dead[0]].exitcode})") from None
                continue
            if kind == "progress":
                if progress:
                    progress(payload)
            elif kind == "handover":
                running.pop(task).join()
                start_next_segment(task, payload)
            elif kind == "result":
                results.append(payload)
                running.pop(task).join(timeout=10)
            else:
                raise RuntimeError(f"ingest worker {task} failed: {payload}")
    finally:
        for process in running.values():
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
        _WORKER_CONTEXT.clear()
        gc.unfreeze()
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def run_ingest(
    inputs: Sequence[ArchiveInput],
    *,
    registry: SchemaRegistry,
    profile: Profile,
    output: Storage,
    sink: InvalidSink,
    workers: int | None = None,
    app_id: str | None = None,
    limits: ArchiveLimits = ArchiveLimits(),
    progress: Callable[[int], None] | None = None,
    run_id: str | None = None,
    prefetch: int = 0,
    archives_per_process: int | None = None,
) -> dict:
    started = datetime.now(UTC)
    run_id = run_id or new_run_id()
    ctx = IngestContext(registry, profile, limits, app_id, load_ledger(output), prefetch)
    workers = max(1, workers or os.cpu_count() or 1)
    tasks = split_tasks(inputs, workers) if inputs else []
    per_process = archives_per_process or ARCHIVES_PER_PROCESS
    if len(tasks) > 1 or any(len(task_inputs) > per_process for task_inputs in tasks):
        results = _run_parallel(tasks, ctx, output, run_id, progress, per_process)
    else:  # one process's worth of archives: no worker process needed
        results = [process_batch(index, task_inputs, ctx, output, run_id, on_archive=progress) for index, task_inputs in enumerate(tasks)]
    return finish_run(run_id, ctx, results, started, output, sink)
