"""Lines kept in an unnamed temporary file instead of memory.

A backfill's lists -- archives to ingest, files a publish wrote -- grow with
the years it covers; spooled, a run holds nothing per item. The file is read
with positioned reads, so readers (forked workers, a second iteration) never
move each other's offset or the writer's.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

from bridge_downstream.common import jsoncodec

# A block becomes a list of lines at once: at 1 MiB, a listing of 100,000s of
# archives held ~3 MiB of line objects per worker while a block was read.
_BLOCK = 1 << 16


def read_lines(fd: int, block: int = _BLOCK, start: int = 0) -> Iterator[bytes]:
    """Every newline-terminated line of the file ``fd`` from byte ``start`` (a
    line's start), without the newline; reads at positions, so the
    descriptor's offset is untouched."""
    offset, rest = start, b""
    while chunk := os.pread(fd, block, offset):
        offset += len(chunk)
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines


class JsonLinesSpool:
    """JSON values appended one per line and read back in order, any number of times."""

    def __init__(self, prefix: str = "bridge-downstream-spool-"):
        self._file = tempfile.TemporaryFile(prefix=prefix)  # noqa: SIM115 - lives as long as the spool
        self._count = 0

    def append(self, value) -> None:
        self._file.write(jsoncodec.line(value))
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator:
        self._file.flush()
        return (jsoncodec.parse(line) for line in read_lines(self._file.fileno()))

    def close(self) -> None:
        self._file.close()
