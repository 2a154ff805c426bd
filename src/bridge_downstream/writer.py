"""Batched NDJSON part files: one per dataset, partition and task.

Rows are appended to files in a local staging folder, so memory stays flat
whatever the input size. A checkpoint before each archive lets an archive
that turns out invalid half-way be rolled back by truncation, so no row of
an invalid record is ever written. ``publish`` moves the finished files to
storage under names derived from what they hold: the same archives give the
same names, so a rerun overwrites instead of duplicating.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import layout
from .storage import Storage

MAX_OPEN_FILES = 128
PUBLISH_THREADS = 8


@dataclass(frozen=True)
class WrittenPart:
    dataset_id: str
    partition: tuple[tuple[str, object], ...]
    key: str
    rows: int
    size: int


class PartWriter:
    def __init__(self, task: int, staging_dir: str | None = None):
        self.task = task
        self._own_staging = staging_dir is None
        self.staging_dir = staging_dir or tempfile.mkdtemp(prefix="bridge-downstream-parts-")
        self._paths: dict[tuple, str] = {}
        self._rows: dict[tuple, int] = {}
        self._sizes: dict[tuple, int] = {}  # bytes written, so a checkpoint needs no stat per file
        self._open: OrderedDict[tuple, object] = OrderedDict()
        self._identity_sum = 0  # of the committed archives' identities: a set digest in O(1) memory
        self._committed = 0
        self._touched: dict[tuple, tuple[int, int]] = {}  # slot -> (size, rows) at the checkpoint
        self._generation = 0

    def _handle(self, slot: tuple):
        handle = self._open.get(slot)
        if handle is not None:
            self._open.move_to_end(slot)
            return handle
        if slot not in self._paths:
            self._paths[slot] = os.path.join(self.staging_dir, f"{len(self._paths):06d}.ndjson")
            self._rows[slot] = 0
            self._sizes[slot] = 0
        if len(self._open) >= MAX_OPEN_FILES:
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        handle = open(self._paths[slot], "ab")
        self._open[slot] = handle
        return handle

    def write(self, dataset_id: str, partition: tuple[tuple[str, object], ...], line: bytes) -> None:
        self.write_many(dataset_id, partition, [line])

    def write_many(self, dataset_id: str, partition: tuple[tuple[str, object], ...], lines: list[bytes]) -> None:
        """Append NDJSON lines (each ending in a newline) in one buffered write."""
        if not lines:
            return
        slot = (dataset_id, partition)
        handle = self._handle(slot)
        if slot not in self._touched:
            self._touched[slot] = (self._sizes[slot], self._rows[slot])
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        handle.write(data)
        self._rows[slot] += len(lines)
        self._sizes[slot] += len(data)

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
            handle = self._open.pop(slot, None)
            if handle is not None:
                handle.close()
            with open(self._paths[slot], "ab") as stream:
                stream.truncate(size)
            self._rows[slot] = rows
            self._sizes[slot] = size
        self._touched = {}

    def commit(self, identity: str) -> None:
        self._identity_sum = (self._identity_sum + int(identity, 16)) % (1 << 256)
        self._committed += 1

    def publish(self, storage: Storage) -> list[WrittenPart]:
        for handle in self._open.values():
            handle.close()
        self._open.clear()
        tag = hashlib.sha256(f"{self._identity_sum:064x}/{self._committed}".encode()).hexdigest()[:16]
        parts = []
        for slot, path in sorted(self._paths.items(), key=lambda item: str(item[0])):
            rows = self._rows[slot]
            if rows == 0:
                continue
            dataset_id, partition = slot
            key = layout.json_part_key(dataset_id, dict(partition), tag, self.task)
            parts.append((path, WrittenPart(dataset_id, partition, key, rows, os.path.getsize(path))))
        # Many small uploads: on S3 each waits for a round trip, so several go
        # at once -- a bounded few, not one pending task per partition.
        with ThreadPoolExecutor(max_workers=PUBLISH_THREADS) as pool:
            in_flight: deque = deque()
            for path, part in parts:
                if len(in_flight) >= 2 * PUBLISH_THREADS:
                    in_flight.popleft().result()
                in_flight.append(pool.submit(storage.upload_file, path, part.key))
            for upload in in_flight:
                upload.result()
        return [part for _, part in parts]

    def close(self) -> None:
        for handle in self._open.values():
            handle.close()
        self._open.clear()
        if self._own_staging:
            shutil.rmtree(self.staging_dir, ignore_errors=True)
