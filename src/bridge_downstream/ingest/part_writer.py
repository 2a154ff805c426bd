"""Batched NDJSON part files: one per dataset, partition and task at a time.

Rows are gathered in memory per part file and appended to files in a local
staging folder when ``BUFFERED_BYTES`` of them are waiting, so memory stays
flat whatever the input size. A checkpoint before each archive lets an
archive that turns out invalid half-way be rolled back (by truncation, where
its rows reached the file), so no row of an invalid record is ever written.

At most ``max_staged`` part files are staged at once: when an archive needs
a new one beyond that, the part written to least recently (a finished day,
when archives come in date order) is published and forgotten. A backfill of
years of uploads therefore runs with the memory and local disk of a short
batch; a partition whose part was published and which is written again gets
a second part file.

A task that runs in several processes in turn (the local command starts a
new one every few thousand archives) hands its staged part files from one
to the next (:meth:`PartWriter.hand_over`), so it still writes one part file
per partition.

A part file is named after what it holds -- the set of archives whose rows
are in it -- so the same archives give the same names whatever their order,
and a rerun overwrites instead of duplicating.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from bridge_downstream.common import layout
from bridge_downstream.common.storage import Storage
from bridge_downstream.ingest.context import InvalidArchive

# Rows waiting in memory, for all of a writer's part files together. A small
# upload adds a few KB to each of a few of hundreds of part files: kept open,
# each file would need an open file object (an open, a close and a flush per
# archive, as only so many can stay open); gathered, each gets one append
# (open, write, close) per few archives.
BUFFERED_BYTES = 8 << 20
MAX_STAGED_PARTS = 1024
PUBLISH_THREADS = 8
_IDENTITY_MODULUS = 1 << 256

Slot = tuple  # (dataset id, partition: ((name, value), ...))


@dataclass(frozen=True)
class WrittenPart:
    dataset_id: str
    partition: tuple[tuple[str, object], ...]
    key: str
    rows: int
    size: int


@dataclass(slots=True)
class StagedPart:
    path: str
    rows: int = 0
    size: int = 0  # bytes written, so a checkpoint needs no stat per file
    identity_sum: int = 0  # of the committed archives in it: a set digest in O(1) memory
    archives: int = 0
    in_file: int = 0  # of ``size``, the bytes appended to the file; the rest are ``waiting``
    waiting: bytearray | None = None


@dataclass
class StagedParts:
    """A writer's unpublished part files, handed from one process to the next
    (:meth:`PartWriter.hand_over`): the successor appends to the same files."""

    staging_dir: str
    staged: list[tuple[Slot, StagedPart]]  # least recently written first
    files_made: int
    published: int


class PartWriter:
    """One task's part files. ``on_published`` hears of every part file as it
    is published (the task's spool lists them), so nothing per part is kept."""

    def __init__(
        self,
        task: int,
        storage: Storage,
        on_published: Callable[[WrittenPart], None] = lambda part: None,
        staging_dir: str | None = None,
        max_staged: int | None = None,
    ):
        self.task = task
        self.storage = storage
        self.on_published = on_published
        self.max_staged = max_staged or MAX_STAGED_PARTS
        self._own_staging = staging_dir is None
        self.staging_dir = staging_dir or tempfile.mkdtemp(prefix="bridge-downstream-parts-")
        self._staged: OrderedDict[Slot, StagedPart] = OrderedDict()  # least recently written first
        self._waiting_bytes = 0
        self._touched: dict[Slot, tuple[int, int]] = {}  # slot -> (size, rows) at the checkpoint
        self._generation = 0
        self._files_made = 0
        self._pool: ThreadPoolExecutor | None = None
        self._uploads: deque[Future] = deque()
        self.published = 0

    @property
    def staged(self) -> int:
        """Part files being written to (not yet published)."""
        return len(self._staged)

    # -- writing ----------------------------------------------------------------

    def _staged_part(self, slot: Slot) -> StagedPart:
        part = self._staged.get(slot)
        if part is not None:
            self._staged.move_to_end(slot)
            return part
        dataset_id, partition = slot
        try:  # the archive's metadata names the partition: a key it cannot have makes the archive invalid
            layout.json_partition_prefix(dataset_id, dict(partition))
        except layout.UnusableKey as error:
            raise InvalidArchive(f"unusable-key: the metadata gives no usable partition folder: {error}") from None
        if len(self._staged) >= self.max_staged:
            self._publish_least_recent()
        part = self._staged[slot] = StagedPart(os.path.join(self.staging_dir, f"{self._files_made:06d}.ndjson"))
        self._files_made += 1
        return part

    def write(self, dataset_id: str, partition: tuple[tuple[str, object], ...], line: bytes) -> None:
        self.write_many(dataset_id, partition, [line])

    def write_many(self, dataset_id: str, partition: tuple[tuple[str, object], ...], lines: list[bytes]) -> None:
        """Append NDJSON lines (each ending in a newline) in one buffered write."""
        if lines:
            self.write_block(dataset_id, partition, lines[0] if len(lines) == 1 else b"".join(lines), len(lines))

    def write_block(self, dataset_id: str, partition: tuple[tuple[str, object], ...], data: bytes, rows: int) -> None:
        """Append ``rows`` NDJSON lines, given as one block of bytes."""
        if not rows:
            return
        slot = (dataset_id, partition)
        part = self._staged_part(slot)
        if slot not in self._touched:
            self._touched[slot] = (part.size, part.rows)
        if part.waiting is None:
            part.waiting = bytearray(data)
        else:
            part.waiting += data
        part.rows += rows
        part.size += len(data)
        self._waiting_bytes += len(data)
        if self._waiting_bytes > BUFFERED_BYTES:
            for waiting in self._staged.values():
                self._append_waiting(waiting)

    def _append_waiting(self, part: StagedPart) -> None:
        """Append the part's waiting rows to its file."""
        if not part.waiting:
            return
        fd = os.open(part.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            with memoryview(part.waiting) as remaining:
                while remaining:
                    remaining = remaining[os.write(fd, remaining) :]
        finally:
            os.close(fd)
        part.in_file += len(part.waiting)
        self._waiting_bytes -= len(part.waiting)
        part.waiting = None

    # -- one archive at a time ----------------------------------------------------

    def checkpoint(self) -> int:
        """Mark the start of an archive. O(1): sizes and row counts are kept in
        memory and only the part files written after the mark are remembered."""
        self._generation += 1
        self._touched = {}
        return self._generation

    def rollback(self, token: int) -> None:
        """Undo every write since checkpoint ``token`` (the latest one)."""
        if token != self._generation:
            raise ValueError("rollback to a checkpoint other than the latest")
        for slot, (size, rows) in self._touched.items():
            part = self._staged[slot]  # a touched part is never published before the commit
            if size >= part.in_file:  # the archive's rows are all still waiting
                if part.waiting is not None:
                    self._waiting_bytes -= len(part.waiting) - (size - part.in_file)
                    del part.waiting[size - part.in_file :]
            else:
                self._waiting_bytes -= len(part.waiting or b"")
                part.waiting = None
                os.truncate(part.path, size)
                part.in_file = size
            part.rows, part.size = rows, size
        self._touched = {}

    def commit(self, identity: str) -> None:
        """The archive since the checkpoint is done: its rows stay, and the
        part files it wrote to now count it in their names."""
        value = int(identity, 16)
        for slot in self._touched:
            part = self._staged[slot]
            part.identity_sum = (part.identity_sum + value) % _IDENTITY_MODULUS
            part.archives += 1
        self._touched = {}

    # -- publishing -----------------------------------------------------------------

    def _publish_least_recent(self) -> None:
        for slot in self._staged:
            if slot not in self._touched:  # the current archive's parts stay until it is decided
                self._publish(slot)
                return

    def _publish(self, slot: Slot) -> None:
        part = self._staged.pop(slot)
        if part.rows == 0:  # only rolled-back rows
            self._waiting_bytes -= len(part.waiting or b"")
            if os.path.exists(part.path):  # rows that reached the file before they were rolled back
                os.unlink(part.path)
            return
        self._append_waiting(part)
        dataset_id, partition = slot
        tag = hashlib.sha256(f"{part.identity_sum:064x}/{part.archives}".encode()).hexdigest()[:16]
        written = WrittenPart(
            dataset_id,
            partition,
            layout.json_part_key(dataset_id, dict(partition), tag, self.task),
            part.rows,
            part.size,
        )
        # Many small uploads: on S3 each waits for a round trip, so several go
        # at once -- a bounded few, not one pending task per partition.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=PUBLISH_THREADS, thread_name_prefix="part-upload")
        while len(self._uploads) >= 2 * PUBLISH_THREADS:
            self._uploads.popleft().result()
        self._uploads.append(self._pool.submit(self._upload, part.path, written.key))
        self.published += 1
        self.on_published(written)

    def _upload(self, path: str, key: str) -> None:
        self.storage.move_in(path, key)

    def publish(self) -> int:
        """Publish every staged part file and wait for all uploads; returns the
        number of part files this writer published in all."""
        for slot in sorted(self._staged, key=str):
            self._publish(slot)
        self._wait_for_uploads()
        return self.published

    # -- one task in several processes ------------------------------------------------

    def hand_over(self) -> StagedParts:
        """Stop between two archives and give the staged part files to a
        successor (:meth:`taking_over`), which goes on appending to them: a
        task run by several processes in turn still writes one part file per
        partition. Waits for this writer's uploads."""
        if self._touched:
            raise ValueError("hand over between archives only: an archive is being written")
        for part in self._staged.values():
            self._append_waiting(part)
        self._wait_for_uploads()
        state = StagedParts(self.staging_dir, list(self._staged.items()), self._files_made, self.published)
        self._staged = OrderedDict()
        self._own_staging = False  # the files are the successor's now
        return state

    @classmethod
    def taking_over(cls, task: int, storage: Storage, state: StagedParts, **options) -> PartWriter:
        writer = cls(task, storage, staging_dir=state.staging_dir, **options)
        writer._staged = OrderedDict(state.staged)
        writer._files_made, writer.published = state.files_made, state.published
        return writer

    def _wait_for_uploads(self) -> None:
        while self._uploads:
            self._uploads.popleft().result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._own_staging:
            shutil.rmtree(self.staging_dir, ignore_errors=True)
