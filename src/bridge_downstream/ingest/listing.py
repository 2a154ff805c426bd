"""Which archives a run reads: one input, and the spooled listing of a storage's archives."""

from __future__ import annotations

import array
import copy
import json
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from bridge_downstream.common.spool import read_lines
from bridge_downstream.common.storage import ObjectInfo, RefusedEntry, Storage, list_entries


@dataclass(frozen=True, slots=True)
class ArchiveInput:
    """One archive to ingest: where it is, and what Bridge said about it."""

    storage: Storage
    key: str
    source_bucket: str | None = None
    raw_folder_id: str | None = None
    metadata: Mapping[str, object] | None = None  # None: read the object's metadata
    # Why the listing could not use the entry (a FIFO, a dangling link, ...):
    # the input is skipped with this reason, and nothing is opened.
    refused: str | None = None

    @property
    def source(self) -> str:
        return self.storage.uri(self.key)

    @classmethod
    def of_entry(cls, storage: Storage, entry: ObjectInfo | RefusedEntry) -> ArchiveInput:
        """An entry :func:`list_entries` gave (or named directly): an archive, or refused with its reason."""
        return cls(storage, entry.key, refused=entry.reason if isinstance(entry, RefusedEntry) else None)


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
    and each would otherwise read all the keys before its own.

    Entries the storage could not offer as objects (:class:`RefusedEntry`: a
    FIFO, a dangling link, a name with a newline, ...) are inputs too, with
    the reason (``ArchiveInput.refused``): each is accounted for as
    ``skipped``, in its place in key order."""

    MARK_EVERY = 4096
    _REFUSED = b"\0"  # starts a refused entry's line: JSON [key, reason] (no key starts with a NUL)

    def __init__(self, storage: Storage, infos: Iterable[ObjectInfo | RefusedEntry | str]):
        """``infos``: :class:`ObjectInfo` (or keys) and :class:`RefusedEntry`
        in key order, as :func:`list_entries` yields them."""
        self.storage = storage
        self._file = tempfile.TemporaryFile(prefix="bridge-downstream-listing-")  # noqa: SIM115 - lives as long as the listing
        self.total_bytes = 0  # of the archives, when sizes are given
        self._marks = array.array("q")  # file offset of key k * MARK_EVERY: 8 bytes per 4096 archives
        count, offset, previous = 0, 0, None
        for info in infos:
            key = info if isinstance(info, str) else info.key
            if isinstance(info, RefusedEntry):
                line = self._REFUSED + json.dumps([key, info.reason]).encode()
            elif "\n" in key or key.startswith("\0"):
                raise ValueError(f"an archive key contains a newline or starts with a NUL: {key!r}")
            else:
                line = key.encode("utf-8")
            if previous is not None and key <= previous:
                raise ValueError(f"archive keys must come in key order, once each: {key!r} after {previous!r}")
            if count % self.MARK_EVERY == 0:
                self._marks.append(offset)
            offset += self._file.write(line + b"\n")
            self.total_bytes += info.size if isinstance(info, ObjectInfo) else 0
            count, previous = count + 1, key
        self._file.flush()
        self._range = range(count)

    @classmethod
    def of_storage(cls, storage: Storage, suffixes: tuple[str, ...], prefix: str = "") -> ArchiveListing:
        """Every object under ``prefix`` whose name ends in one of ``suffixes``
        (any case), and every entry so named that is no object, refused with
        its reason; and every folder that could not be walked, as it may hold
        archives."""
        return cls(
            storage,
            (
                entry
                for entry in list_entries(storage, prefix)
                if entry.key.lower().endswith(suffixes) or entry.key.endswith("/")
            ),
        )

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
                if line.startswith(self._REFUSED):
                    yield ArchiveInput.of_entry(self.storage, RefusedEntry(*json.loads(line[len(self._REFUSED) :])))
                else:
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
