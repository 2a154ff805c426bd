"""The ingest ledger at a given history: how much memory and time a run
spends reading every archive ever ingested, as JSON lines (the way runs
read it before the digests files) and as the 16-byte digests runs read now.

    pipenv run python bench/ledger.py --archives 100000 1000000

Prints one line per size and format: memory held once loaded and at peak
while loading (``tracemalloc``), load time, and the time of one lookup.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import tempfile
import time
import tracemalloc

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.ingest.outcomes import IngestLedger, _digests_header, load_ledger

PER_RUN = 10_000  # archives per ingest run: one ledger file pair each


def identity(number: int) -> str:
    return hashlib.sha256(str(number).encode()).hexdigest()


def write_history(storage: LocalStorage, archives: int) -> None:
    for start in range(0, archives, PER_RUN):
        numbers = range(start, min(archives, start + PER_RUN))
        lines = b"".join(
            json.dumps(
                {
                    "identity": identity(n),
                    "source": f"s3://uploads/archives/{n}.zip",
                    "recordid": f"rec-{n}",
                    "datasets": {"MotionRecord_v1": 25},
                    "run_id": "run",
                }
            ).encode()
            + b"\n"
            for n in numbers
        )
        stem = f"{layout.LEDGER_PREFIX}/run-{start:010d}"
        storage.write_bytes(stem + ".jsonl", lines)
        storage.write_bytes(
            stem + ".digests", _digests_header(len(lines)) + b"".join(IngestLedger.digest(identity(n)) for n in numbers)
        )


def lines_only(storage: LocalStorage) -> frozenset[str]:
    """As runs read the ledger before the digests files: every JSON line into a set."""
    identities = set()
    for info in storage.list(layout.LEDGER_PREFIX + "/"):
        if info.key.endswith(".jsonl"):
            for line in storage.read_bytes(info.key).splitlines():
                identities.add(json.loads(line)["identity"])
    return frozenset(identities)


def measure(archives: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as root:
        storage = LocalStorage(root)
        write_history(storage, archives)
        for name, load in (
            ("JSON lines into a set of strings (before)", lines_only),
            ("16-byte digests (now)", load_ledger),
        ):
            gc.collect()
            tracemalloc.start()
            started = time.perf_counter()
            ledger = load(storage)
            seconds = time.perf_counter() - started
            held, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            probe, lookups = identity(archives // 2), 100_000
            started = time.perf_counter()
            for _ in range(lookups):
                assert probe in ledger
            lookup_us = (time.perf_counter() - started) / lookups * 1e6
            print(
                f"{archives:>9,} archives, {name}: held {held / 2**20:.1f} MiB, peak while loading "
                f"{peak / 2**20:.1f} MiB, load {seconds:.2f} s, lookup {lookup_us:.2f} us",
                flush=True,
            )
            del ledger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archives", type=int, nargs="+", default=[100_000, 1_000_000])
    for archives in parser.parse_args().archives:
        measure(archives)


if __name__ == "__main__":
    main()
