"""A run's objects are read once the run has committed, never before.

An ingest run stores its part files as it goes (a task publishes a part file
when it stages too many, and the rest at its end) and its ledger file at its
end. Killed midway, it would leave part files that readers take while the
ledger does not hold their archives: the rerun ingests them again, and every
row is read twice. So an object a run stores for readers counts only once the
run has committed:

* before it stores such an object, the run stores an empty *claim* on it,
  ``claims/<key>@<run id>`` (:class:`ClaimingStorage` does it for every
  object stored through it);
* once all of them are stored -- its part files, then its ledger file -- the
  run *commits*: it stores ``commits/<run id>.json``, one small object, so a
  run has committed or it has not, never half;
* readers take an object that no run claims, or that a committed run claims
  (:func:`committed_objects`). An object that only runs without a commit
  record claim is never read.

So that readers need not list every claim (one per part file of the whole
history) to find the few of runs without commit, each claimant is recorded
before its first claim, ``claimants/<run id>``, and each claim also under its
claimant, ``claimed/<run id>/<key>@``: a reader lists the claimants and the
commit records (one each per run) and reads the claims of the claimants
without commit only. An output whose runs claimed before claimants were
recorded has the claimants of its claims recorded by the first run that
records one (:func:`record_claimant`); until then readers list its claims.

A task that may be attempted again within its run (a Spark task on Glue,
retried when its executor is lost) claims its objects as one attempt,
``<run id>+<attempt>`` (:func:`attempt_claimant`): the run's commit first
stores ``commits/<run id>+<attempt>.json`` for each attempt whose result it
took, so a failed attempt's objects are never read, whatever they hold.

Objects stored before claims existed, or placed by hand, have no claim and are
read as they always were: outputs of earlier runs publish the same rows.

Claims are kept after the commit. A part file is named after the archives it
holds, so a rerun of the same archives stores the same key again; when such a
run dies uncommitted, the committed run's claim keeps the key readable (it
holds the same archives' rows).

Nothing here removes an object: a reader cannot tell a killed run from a slow
one (in AWS two ingest runs of one study can overlap).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import BinaryIO

from bridge_downstream.common import layout
from bridge_downstream.common.storage import ObjectInfo, Storage

CLAIMS_PREFIX = "claims"
COMMITS_PREFIX = "commits"
CLAIMANTS_PREFIX = "claimants"
CLAIMED_PREFIX = "claimed"
_CLAIM_SEPARATOR = "@"  # in no claimant: the last one in a claim's key ends the claimed key
_ATTEMPT_SEPARATOR = "+"  # in no run id
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_CLAIMANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?:\+[a-z0-9]+)?")  # a run id, or an attempt at one


def _checked(claimant: str, pattern: re.Pattern = _CLAIMANT) -> str:
    if not pattern.fullmatch(claimant):
        raise ValueError(f"{claimant!r} is no run id (letters, digits, '.', '_' and '-') or attempt of one")
    return claimant


def attempt_claimant(run_id: str) -> str:
    """A claimant for one attempt at a task of ``run_id``, new every time."""
    return f"{_checked(run_id, _RUN_ID)}{_ATTEMPT_SEPARATOR}{uuid.uuid4().hex[:12]}"


def claim_key(key: str, claimant: str) -> str:
    return f"{CLAIMS_PREFIX}/{key}{_CLAIM_SEPARATOR}{_checked(claimant)}"


def claimant_key(claimant: str) -> str:
    return f"{CLAIMANTS_PREFIX}/{_checked(claimant)}"


def claimed_key(key: str, claimant: str) -> str:
    # ends as a claim does, never as the object (no reader of ``*.ndjson`` takes it)
    return f"{CLAIMED_PREFIX}/{_checked(claimant)}/{key}{_CLAIM_SEPARATOR}"


def record_claimant(storage: Storage, claimant: str) -> None:
    """Record ``claimant`` before its first claim. The first claimant an
    output records first records those of the claims already there (runs
    from before claimants were recorded), so no claimant goes unrecorded."""
    if next(iter(storage.list(CLAIMANTS_PREFIX + "/")), None) is None:
        committed = committed_claimants(storage)
        earlier: set[str] = set()
        for key, name in _listed_claims(storage, ""):
            if name not in committed:  # a committed run's claims are never looked up by claimant
                storage.write_bytes(claimed_key(key, name), b"")
            earlier.add(name)
        for name in sorted(earlier):
            storage.write_bytes(claimant_key(name), b"")
    storage.write_bytes(claimant_key(claimant), b"")


def _listed_claims(storage: Storage, prefix: str) -> Iterator[tuple[str, str]]:
    """(claimed key, claimant) of every claim on a key under ``prefix``."""
    start = len(CLAIMS_PREFIX) + 1
    for info in storage.list(f"{CLAIMS_PREFIX}/{prefix}"):
        key, _, claimant = info.key[start:].rpartition(_CLAIM_SEPARATOR)
        yield key, claimant


def commit_key(claimant: str) -> str:
    return f"{COMMITS_PREFIX}/{_checked(claimant)}.json"


def commit(storage: Storage, run_id: str, summary: dict, attempts: Iterable[str] = ()) -> None:
    """The run's commit: every object it claimed, or the task ``attempts``
    whose results it took claimed, is read from now on. Call it after the
    last of them is stored; the run's own commit record is stored last."""
    committed_at = datetime.now(UTC).isoformat(timespec="seconds")
    for attempt in sorted(set(attempts) - {run_id}):
        if attempt.partition(_ATTEMPT_SEPARATOR)[0] != run_id:
            raise ValueError(f"{attempt!r} is no attempt of run {run_id!r}")
        storage.write_bytes(commit_key(attempt), json.dumps({"run_id": run_id, "attempt": attempt}).encode())
    record = {"run_id": run_id, "committed_at": committed_at, **summary}
    storage.write_bytes(commit_key(_checked(run_id, _RUN_ID)), json.dumps(record, indent=2).encode())


def committed_claimants(storage: Storage) -> set[str]:
    """Runs that committed, and the attempts whose results they took."""
    start = len(COMMITS_PREFIX) + 1
    names = {info.key[start:].removesuffix(".json") for info in storage.list(COMMITS_PREFIX + "/")}
    # An attempt's record counts with its run's commit record only (stored after it).
    return {name for name in names if name.partition(_ATTEMPT_SEPARATOR)[0] in names}


def committed_runs(storage: Storage) -> set[str]:
    """Runs that committed (their attempts left out)."""
    return {name for name in committed_claimants(storage) if _ATTEMPT_SEPARATOR not in name}


def commit_record(storage: Storage, run_id: str) -> dict:
    """What a run's commit recorded (:func:`commit`'s ``summary``, its run id and time)."""
    return json.loads(storage.read_bytes(commit_key(_checked(run_id, _RUN_ID))))


def committed_objects(storage: Storage, prefix: str) -> list[ObjectInfo]:
    """The objects under ``prefix`` (in key order) that no run claims or that a
    committed run claims: every object readers may take."""
    # Objects first, then claimants, commits and claims: a run records itself
    # and claims an object before it stores it, so every object listed here
    # has its claimant recorded and its claim stored. A commit made after the
    # commits are listed is missed, which only leaves its objects unread
    # until the next reader.
    listed = list(storage.list(prefix))
    if not listed:
        return []
    recorded = {info.key[len(CLAIMANTS_PREFIX) + 1 :] for info in storage.list(CLAIMANTS_PREFIX + "/")}
    committed = committed_claimants(storage)
    if recorded:
        suspect = {
            info.key[len(claimed_key("", name)) - 1 : -1]
            for name in sorted(recorded - committed)
            for info in storage.list(claimed_key(prefix, name)[:-1])
        }
        claims: Iterable[tuple[str, str]] = (
            claim for key in suspect for claim in _listed_claims(storage, key + _CLAIM_SEPARATOR) if claim[0] == key
        )
    else:  # no claimant recorded yet: an output from before they were, its claims all listed
        claims = _listed_claims(storage, prefix)
    claimants: dict[str, list[str]] = {}
    for key, claimant in claims:
        claimants.setdefault(key, []).append(claimant)
    # a key a committed run claims too (a rerun's part file of the same name) is read
    unread = {key for key, names in claimants.items() if committed.isdisjoint(names)}
    return [info for info in listed if info.key not in unread]


def committed_part_files(storage: Storage, dataset_id: str) -> list[ObjectInfo]:
    """The NDJSON part files of a dataset that readers take, in key order: the
    one listing of part files for every reader of ``json/``."""
    return [
        info
        for info in committed_objects(storage, layout.dataset_prefix(dataset_id) + "/")
        if info.key.endswith(".ndjson")
    ]


class ClaimingStorage:
    """``storage`` as a run (or an attempt at one of its tasks) stores objects
    for readers: each one claimed before it is stored (written, uploaded,
    moved in or copied)."""

    def __init__(self, storage: Storage, claimant: str):
        self.storage = storage
        self.claimant = _checked(claimant)
        self._recorded = False
        # a task stores its part files from several threads: the claimant is recorded once,
        # never by two of them at a time (two stores of one key at once)
        self._recording = threading.Lock()

    def _claim(self, key: str) -> None:
        if not self._recorded:
            with self._recording:
                if not self._recorded:
                    record_claimant(self.storage, self.claimant)
                    self._recorded = True
        self.storage.write_bytes(claimed_key(key, self.claimant), b"")
        self.storage.write_bytes(claim_key(key, self.claimant), b"")

    def write_bytes(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        self._claim(key)
        self.storage.write_bytes(key, data, metadata)

    def upload_file(self, local_path: str, key: str) -> None:
        self._claim(key)
        self.storage.upload_file(local_path, key)

    def move_in(self, local_path: str, key: str) -> None:
        self._claim(key)
        self.storage.move_in(local_path, key)

    def copy(self, source_key: str, dest_key: str) -> None:
        self._claim(dest_key)
        self.storage.copy(source_key, dest_key)

    def uri(self, key: str) -> str:
        return self.storage.uri(key)

    def read_bytes(self, key: str) -> bytes:
        return self.storage.read_bytes(key)

    def open_read(self, key: str) -> BinaryIO:
        return self.storage.open_read(key)

    def exists(self, key: str) -> bool:
        return self.storage.exists(key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        return self.storage.list(prefix)

    def delete(self, key: str) -> None:
        self.storage.delete(key)

    def metadata(self, key: str) -> Mapping[str, object]:
        return self.storage.metadata(key)

    def open_read_with_metadata(self, key: str) -> tuple[BinaryIO, Mapping[str, object]]:
        return self.storage.open_read_with_metadata(key)
