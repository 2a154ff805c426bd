"""Where every archive of an ingest run ended, kept in files instead of memory.

A run's bookkeeping must not grow with the number of archives: a backfill of
years of uploads runs with the memory of a daily batch. Each task (a local
worker process, or a Spark task on Glue) therefore writes one line per
archive to its own *outcome spool* on the output storage, and hands back only
a :class:`RunTally` -- counts that add up across tasks -- and the keys of its
files. At the end of the run :func:`finish_run` streams the spools once, in
source order (each task's spool is already in source order, so a k-way merge
needs one line per task in memory), and from that one pass

* sends the invalid records to the invalid sink,
* writes the run's ledger file (the processed archives' identities),
* writes ``reports/<run id>.records.jsonl``: one line per input archive --
  processed, invalid or skipped, with the reason -- the complete account,
* commits the run (:func:`bridge_downstream.common.run_commits.commit`):
  from then on its part files and its ledger file are read,
* writes the run report, whose lists hold at most ``REPORT_LIST_LIMIT``
  entries (the first in source order; the rest are counted and are in the
  records file).

The order (sink, ledger, commit, report) keeps the rule of a crash: a run
killed before its commit leaves no part file and no ledger entry that
anyone reads, and its rerun redoes the work, once; it never loses it.
"""

from __future__ import annotations

import heapq
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge_downstream.common import jsoncodec, layout, run_commits
from bridge_downstream.common.run_commits import ClaimingStorage, committed_objects
from bridge_downstream.common.storage import Storage
from bridge_downstream.ingest.invalid_sink import InvalidSink

PROCESSED, INVALID, SKIPPED = "processed", "invalid", "skipped"
REPORT_LIST_LIMIT = 1000  # entries per list in the run report; the records file has all


@dataclass
class RunTally:
    """What a run's report counts; adds up across tasks, independent of their order."""

    archives: dict[str, int] = field(default_factory=lambda: {PROCESSED: 0, INVALID: 0, SKIPPED: 0})
    datasets: dict[str, dict[str, int]] = field(default_factory=dict)
    files_skipped: dict[tuple[str, str], int] = field(default_factory=dict)  # (file, reason) -> archives
    wide_integer_rows: dict[str, int] = field(default_factory=dict)  # dataset -> rows with an integer beyond 64 bits

    def count(
        self,
        status: str,
        rows: dict[str, int],
        files_skipped: Iterable[dict[str, str]],
        wide_integer_rows: dict[str, int] | None = None,
    ) -> None:
        self.archives[status] += 1
        for dataset_id, count in (wide_integer_rows or {}).items():
            self.wide_integer_rows[dataset_id] = self.wide_integer_rows.get(dataset_id, 0) + count
        for dataset_id, count in rows.items():
            entry = self.datasets.setdefault(dataset_id, {"records": 0, "rows": 0, "files": 0})
            entry["records"] += 1
            entry["rows"] += count
        if status == PROCESSED:
            for skipped in files_skipped:
                key = (sys.intern(skipped["file"]), sys.intern(skipped["reason"]))
                self.files_skipped[key] = self.files_skipped.get(key, 0) + 1

    def count_part(self, dataset_id: str) -> None:
        self.datasets.setdefault(dataset_id, {"records": 0, "rows": 0, "files": 0})["files"] += 1

    def merge(self, other: RunTally) -> None:
        for status, count in other.archives.items():
            self.archives[status] = self.archives.get(status, 0) + count
        for dataset_id, counts in other.datasets.items():
            entry = self.datasets.setdefault(dataset_id, {"records": 0, "rows": 0, "files": 0})
            for name, value in counts.items():
                entry[name] += value
        for key, count in other.files_skipped.items():
            self.files_skipped[key] = self.files_skipped.get(key, 0) + count
        for dataset_id, count in other.wide_integer_rows.items():
            self.wide_integer_rows[dataset_id] = self.wide_integer_rows.get(dataset_id, 0) + count


class IngestLedger:
    """Which archives were ingested before: every identity in the ledger, as
    16-byte digests (the first half of each SHA-256 identity) in 256 runs
    by their first byte. 16 bytes an archive in a few objects, whatever the
    history: forked workers share them without copying, and a Spark task
    gets them as one value. A lookup scans one run (1/256 of the history) in
    C. Two archives share a digest with a chance of 2^-128."""

    WIDTH = 16

    def __init__(self, identities: Iterable[str] = ()):
        self._runs: list[bytearray] = [bytearray() for _ in range(256)]
        self._add(self.digest(identity) for identity in identities)

    @classmethod
    def of_digests(cls, chunks: Iterable[bytes]) -> IngestLedger:
        """From runs of digests as :meth:`digest` makes them (any order)."""
        ledger = cls()
        ledger._add(chunks)
        return ledger

    @classmethod
    def digest(cls, identity: str) -> bytes:
        return bytes.fromhex(identity)[: cls.WIDTH]

    def _add(self, chunks: Iterable[bytes]) -> None:
        width = self.WIDTH
        for chunk in chunks:
            if len(chunk) % width:
                raise ValueError(f"ledger digests must be {width} bytes each")
            for start in range(0, len(chunk), width):
                self._runs[chunk[start]] += chunk[start : start + width]

    def add(self, identity: str) -> None:
        self._add((self.digest(identity),))

    def __len__(self) -> int:
        """Digests held (an archive in two runs' files counts twice)."""
        return sum(len(run) for run in self._runs) // self.WIDTH

    def __contains__(self, identity: str) -> bool:
        digest = self.digest(identity)
        run = self._runs[digest[0]]
        found = run.find(digest)
        while found > 0 and found % self.WIDTH:  # a match across two digests
            found = run.find(digest, found + 1)
        return found >= 0


LEDGER_LINES, LEDGER_DIGESTS = ".jsonl", ".digests"
_DIGESTS_MAGIC = b"BDLEDGR1"  # then the size of the lines file the digests index


def _digests_header(lines_size: int) -> bytes:
    return _DIGESTS_MAGIC + lines_size.to_bytes(8, "big")


_DIGESTS_HEADER_SIZE = len(_digests_header(0))


def load_ledger(storage: Storage) -> IngestLedger:
    """Every archive the ledger records as ingested.

    Each run writes its archives as JSON lines (``<run id>.jsonl``, the
    record operators read and edit) and, beside them, the same archives as
    16-byte digests (``<run id>.digests``): a run reads the digests, 16 bytes
    an archive of history, not a JSON line. A digests file counts only while
    its lines file is the size it indexed: edited lines (entries removed to
    force re-ingestion, docs/operations.md), or lines written before the
    digests existed, are read line by line. The ledger file of a run that
    never committed counts for nothing: its archives were not published
    (:mod:`bridge_downstream.common.run_commits`)."""
    infos = committed_objects(storage, layout.LEDGER_PREFIX + "/")
    sizes = {info.key: info.size for info in infos}
    indexed: set[str] = set()

    def chunks() -> Iterator[bytes]:
        for info in infos:
            if info.key.endswith(LEDGER_DIGESTS):
                lines_key = info.key.removesuffix(LEDGER_DIGESTS) + LEDGER_LINES
                data = storage.read_bytes(info.key)
                if lines_key in sizes and data[:_DIGESTS_HEADER_SIZE] == _digests_header(sizes[lines_key]):
                    indexed.add(lines_key)
                    yield data[_DIGESTS_HEADER_SIZE:]
        for info in infos:
            if info.key.endswith(LEDGER_LINES) and info.key not in indexed:
                for line in storage.read_bytes(info.key).splitlines():
                    if line.strip():
                        yield IngestLedger.digest(jsoncodec.parse(line)["identity"])

    return IngestLedger.of_digests(chunks())


def forget_ingested(storage: Storage, forget: Callable[[dict], bool]) -> list[dict]:
    """Remove from the ledger every entry ``forget`` chooses, so that its
    archive is ingested again by the next run that is given it; the removed
    entries. A run's lines file is rewritten without them and its digests
    file, which indexes the old lines, is deleted (:func:`load_ledger` would
    ignore it anyway; deleted, nobody has to know why)."""
    forgotten: list[dict] = []
    for info in committed_objects(storage, layout.LEDGER_PREFIX + "/"):
        if not info.key.endswith(LEDGER_LINES):
            continue
        kept: list[bytes] = []
        removed = 0
        for line in storage.read_bytes(info.key).splitlines():
            if not line.strip():
                continue
            entry = jsoncodec.parse(line)
            if forget(entry):
                forgotten.append(entry)
                removed += 1
            else:
                kept.append(line)
        if removed:
            storage.write_bytes(info.key, b"".join(line + b"\n" for line in kept))
            digests_key = info.key.removesuffix(LEDGER_LINES) + LEDGER_DIGESTS
            if storage.exists(digests_key):
                storage.delete(digests_key)
    return forgotten


@dataclass
class TaskResult:
    """What a task hands back: counts and where its spools are, never per-archive data."""

    task: int
    tally: RunTally
    outcomes_key: str | None  # this task's outcome spool, in source order
    parts_key: str | None  # this task's part files, one JSON line each
    parts: int = 0
    attempt: str | None = None  # the attempt at the task that claimed its part files, if not the run


def outcome_spool_key(run_id: str, task: int) -> str:
    return layout.join_key(layout.REPORTS_PREFIX, ".spool", run_id, f"outcomes-{task:05d}.jsonl")


def parts_spool_key(run_id: str, task: int) -> str:
    return layout.join_key(layout.REPORTS_PREFIX, ".spool", run_id, f"parts-{task:05d}.jsonl")


def run_records_key(run_id: str) -> str:
    return layout.join_key(layout.REPORTS_PREFIX, f"{run_id}.records.jsonl")


def run_parts_key(run_id: str) -> str:
    return layout.join_key(layout.REPORTS_PREFIX, f"{run_id}.parts.jsonl")


@dataclass
class SpoolState:
    """An unfinished outcome spool, handed from one process to the next."""

    directory: str
    tally: RunTally
    written: int
    parts_written: int
    last_source: str | None


class OutcomeSpool:
    """One task's outcomes and part files, appended to local files, then stored."""

    def __init__(self, task: int, run_id: str, directory: str | None = None, resume: SpoolState | None = None):
        """``directory``: where the spool's files go (a new temporary folder,
        removed by :meth:`close`, if not given); ``resume``: go on with a spool
        another process handed over (:meth:`hand_over`)."""
        self.task, self.run_id = task, run_id
        self.tally = resume.tally if resume else RunTally()
        self._own_dir = directory is None and resume is None
        self._dir = resume.directory if resume else directory or tempfile.mkdtemp(prefix="bridge-downstream-outcomes-")
        self._outcomes_path = os.path.join(self._dir, "outcomes.jsonl")
        self._parts_path = os.path.join(self._dir, "parts.jsonl")
        mode = "ab" if resume else "wb"
        self._outcomes = open(self._outcomes_path, mode)  # noqa: SIM115 - closed by finish() or close()
        self._parts = open(self._parts_path, mode)  # noqa: SIM115 - closed by finish() or close()
        self._written = resume.written if resume else 0
        self._parts_written = resume.parts_written if resume else 0
        self._last_source: str | None = resume.last_source if resume else None
        self._handed_over = False

    def hand_over(self) -> SpoolState:
        """Stop here; a successor process opens ``OutcomeSpool(..., resume=state)``."""
        self._outcomes.close()
        self._parts.close()
        self._handed_over = True
        return SpoolState(self._dir, self.tally, self._written, self._parts_written, self._last_source)

    def add(self, outcome) -> None:
        if self._last_source is not None and outcome.source < self._last_source:
            raise ValueError("outcomes must be spooled in source order")  # the merge relies on it
        self._last_source = outcome.source
        self.tally.count(outcome.status, outcome.rows, outcome.files_skipped, outcome.wide_integer_rows)
        record = {
            "source": outcome.source,
            "status": outcome.status,
            "recordid": outcome.record_id,
            "identity": outcome.identity,
            "reason": outcome.reason,
            "datasets": outcome.rows,
        }
        if outcome.files_skipped:
            record["files_skipped"] = outcome.files_skipped
        if outcome.invalid_entry is not None:
            record["invalid_entry"] = outcome.invalid_entry
        self._outcomes.write(jsoncodec.line(record))
        self._written += 1

    def add_part(self, part) -> None:
        """A part file the task published (as the part writer publishes it)."""
        self.tally.count_part(part.dataset_id)
        self._parts.write(
            jsoncodec.line(
                {
                    "dataset": part.dataset_id,
                    "partition": dict(part.partition),
                    "key": part.key,
                    "rows": part.rows,
                    "size": part.size,
                }
            )
        )
        self._parts_written += 1

    def finish(self, storage: Storage, attempt: str | None = None) -> TaskResult:
        """Store the spools (after the task's part files, claimed by
        the run or ``attempt``, are published)."""
        self._outcomes.close()
        self._parts.close()
        outcomes_key = parts_key = None
        if self._written:
            outcomes_key = outcome_spool_key(self.run_id, self.task)
            storage.move_in(self._outcomes_path, outcomes_key)
        if self._parts_written:
            parts_key = parts_spool_key(self.run_id, self.task)
            storage.move_in(self._parts_path, parts_key)
        return TaskResult(self.task, self.tally, outcomes_key, parts_key, self._parts_written, attempt)

    def close(self) -> None:
        for stream in (self._outcomes, self._parts):
            if not stream.closed:
                stream.close()
        if self._handed_over:
            return
        for path in (self._outcomes_path, self._parts_path):
            if os.path.exists(path):
                os.unlink(path)
        if self._own_dir:
            os.rmdir(self._dir)


def iter_json_lines(storage: Storage, key: str) -> Iterator[dict]:
    with storage.open_read(key) as stream:
        for line in stream:
            if line.strip():
                yield jsoncodec.parse(line)


def read_run_records(storage: Storage, run_id: str) -> Iterator[dict]:
    """Every input archive of a finished run and where it ended, in source order."""
    key = run_records_key(run_id)
    if storage.exists(key):
        yield from iter_json_lines(storage, key)


class _LocalLines:
    """A local file of JSON lines, stored under ``key`` when closed (if any were written)."""

    def __init__(self, storage: Storage, key: str, keep_empty: bool = False):
        self.storage, self.key, self.keep_empty = storage, key, keep_empty
        handle, self.path = tempfile.mkstemp(suffix=".jsonl", prefix="bridge-downstream-")
        self.stream = os.fdopen(handle, "wb")
        self.count = 0

    def write(self, value: dict) -> None:
        self.append(jsoncodec.line(value))

    def append(self, data: bytes) -> None:
        self.stream.write(data)
        self.count += 1

    def store(self) -> bool:
        self.stream.close()
        stored = self.count > 0 or self.keep_empty
        if stored:
            self.storage.move_in(self.path, self.key)
        return stored

    def discard(self) -> None:
        if not self.stream.closed:
            self.stream.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


def _report_entry(record: dict) -> dict:
    entry = {"source": record["source"], "recordid": record["recordid"], "reason": record["reason"]}
    if record["status"] == INVALID:
        entry["errors"] = ((record.get("invalid_entry") or {}).get("validation_result") or {}).get("errors", {})
    return entry


def finish_run(
    run_id: str, ctx, results: Sequence[TaskResult], started: datetime, output: Storage, sink: InvalidSink
) -> dict[str, Any]:
    """Merge the tasks' spools into the sink, the ledger, the records file and
    the report, and commit the run (after its ledger, before its report)."""
    results = sorted(results, key=lambda r: r.task)
    tally = RunTally()
    for result in results:
        tally.merge(result.tally)
    ledger_stem = layout.ledger_key(run_id).removesuffix(".json")
    ledger_output = ClaimingStorage(output, run_id)  # counts once the run commits (below)
    ledger = _LocalLines(ledger_output, ledger_stem + LEDGER_LINES)
    ledger_digests = _LocalLines(ledger_output, ledger_stem + LEDGER_DIGESTS)
    ledger_digests.stream.write(bytes(_DIGESTS_HEADER_SIZE))  # the header, once the lines' size is known
    records = _LocalLines(output, run_records_key(run_id), keep_empty=True)
    parts = _LocalLines(output, run_parts_key(run_id), keep_empty=True)
    listed: dict[str, list[dict]] = {INVALID: [], SKIPPED: []}
    try:
        spools = [iter_json_lines(output, r.outcomes_key) for r in results if r.outcomes_key]
        for record in heapq.merge(*spools, key=lambda r: r["source"]):
            status = record["status"]
            if status == INVALID and record.get("invalid_entry") is not None:
                sink.send(record["invalid_entry"])
            elif status == PROCESSED:
                ledger.write(
                    {
                        "identity": record["identity"],
                        "source": record["source"],
                        "recordid": record["recordid"],
                        "datasets": record["datasets"],
                        "run_id": run_id,
                    }
                )
                ledger_digests.append(IngestLedger.digest(record["identity"]))
            entry = _report_entry(record)
            if status in listed and len(listed[status]) < REPORT_LIST_LIMIT:
                listed[status].append(entry)
            record.pop("invalid_entry", None)
            if "errors" in entry:
                record["errors"] = entry["errors"]
            records.write(record)
        for result in results:
            if result.parts_key:
                for part in iter_json_lines(output, result.parts_key):
                    parts.write(part)
        ledger_size = ledger.stream.tell()
        if ledger.store():  # the digests after the lines: without them a run's lines are read
            ledger_digests.stream.seek(0)
            ledger_digests.stream.write(_digests_header(ledger_size))
            ledger_digests.store()
        records.store()
        parts.store()
    finally:
        for lines in (ledger, ledger_digests, records, parts):
            lines.discard()
    files_skipped = [
        {"file": file, "reason": reason, "archives": count}
        for (file, reason), count in sorted(tally.files_skipped.items())
    ]
    report = {
        "run_id": run_id,
        "stage": "ingest",
        "profile": ctx.profile.name,
        "registry_version": ctx.registry.version,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "archives": {"total": sum(tally.archives.values()), **tally.archives},
        "datasets": dict(sorted(tally.datasets.items())),
        "records": run_records_key(run_id),
        "parts": run_parts_key(run_id),
        "invalid": listed[INVALID],
        "skipped": listed[SKIPPED],
        "not_listed": {status: tally.archives[status] - len(entries) for status, entries in listed.items()},
        "files_skipped": files_skipped[:REPORT_LIST_LIMIT],
        # Kept exact in the rows; publish widens their columns to decimal(38,0) (docs/relationalize.md).
        "integers_beyond_int64": {"rows": dict(sorted(tally.wide_integer_rows.items()))},
    }
    if len(files_skipped) > REPORT_LIST_LIMIT:
        report["not_listed"]["files_skipped"] = len(files_skipped) - REPORT_LIST_LIMIT
    # After the part files (stored by the tasks) and the ledger; the report
    # after the commit, so a run with a report has committed.
    run_commits.commit(
        output,
        run_id,
        {key: report[key] for key in ("archives", "records", "parts")},
        attempts=[result.attempt for result in results if result.attempt],
    )
    output.write_bytes(layout.report_key(run_id), json.dumps(report, indent=2).encode())
    for result in results:
        for key in (result.outcomes_key, result.parts_key):
            if key:
                output.delete(key)
    return report


@dataclass
class RepeatedArchives:
    """Archives more than one input of a run ingested (see :func:`repeated_archives`)."""

    kept: dict[str, tuple[int, str]]  # identity -> (task, source) of the copy that is ingested
    tasks: set[int]  # the tasks that ingested another copy


def repeated_archives(storage: Storage, results: Sequence[TaskResult]) -> RepeatedArchives:
    """The archives (identities) that more than one input of the run
    ingested -- processed (rows) or invalid (an entry for the sink) -- with
    the copy that keeps that: the first in source order, then task order.
    A task tells a copy that follows its original itself (``TaskCopies``);
    these are the copies it could not: two keys of the same bytes and
    metadata, or one key in two tasks' slices.

    Reads the spools, holding 16 bytes an archive (as :class:`IngestLedger`
    does); a second pass, only when there are repetitions, finds their copies."""
    seen, repeated = IngestLedger(), set()
    for identity, _, _ in _ingested_records(storage, results):
        if identity in seen:
            repeated.add(identity)
        else:
            seen.add(identity)
    copies: dict[str, list[tuple[str, int]]] = {}
    if repeated:
        for identity, source, task in _ingested_records(storage, results):
            if identity in repeated:
                copies.setdefault(identity, []).append((source, task))
    kept: dict[str, tuple[int, str]] = {}
    tasks: set[int] = set()
    for identity, found in copies.items():
        source, task = min(found)
        kept[identity] = (task, source)
        others = list(found)
        others.remove((source, task))
        tasks.update(other_task for _, other_task in others)
    return RepeatedArchives(kept, tasks)


def _ingested_records(storage: Storage, results: Sequence[TaskResult]) -> Iterator[tuple[str, str, int]]:
    """(identity, source, task) of every archive the tasks ended processed or invalid, identified."""
    for result in results:
        if result.outcomes_key:
            for record in iter_json_lines(storage, result.outcomes_key):
                if record["status"] in (PROCESSED, INVALID) and record["identity"]:
                    yield record["identity"], record["source"], result.task


def discard_task_output(storage: Storage, result: TaskResult) -> None:
    """Remove what a task stored -- its part files and its spools -- so that
    it can run again. Before its run commits, nobody reads them."""
    if result.parts_key:
        for part in iter_json_lines(storage, result.parts_key):
            storage.delete(part["key"])
    for key in (result.outcomes_key, result.parts_key):
        if key:
            storage.delete(key)
