"""Readers find the objects of runs without commit from the recorded
claimants, not by listing every claim (common/run_commits.py)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from bridge_downstream.common import run_commits
from bridge_downstream.common.storage import LocalStorage
from support import ListingStorage

PREFIX = "json/dataset=D/"


def names(storage) -> list[str]:
    return [info.key.rsplit("/", 1)[1] for info in run_commits.committed_objects(storage, PREFIX)]


def test_when_every_claimant_committed_no_claim_is_listed(tmp_path):
    storage = ListingStorage(tmp_path)
    storage.write_bytes(f"{PREFIX}part-by-hand.ndjson", b"{}\n")
    for run in ("run-1", "run-2"):
        run_commits.ClaimingStorage(storage, run).write_bytes(f"{PREFIX}part-{run}.ndjson", b"{}\n")
        run_commits.commit(storage, run, {})
    storage.listed.clear()
    assert names(storage) == ["part-by-hand.ndjson", "part-run-1.ndjson", "part-run-2.ndjson"]
    assert not any(p.startswith((run_commits.CLAIMS_PREFIX, run_commits.CLAIMED_PREFIX)) for p in storage.listed)


def test_only_the_claims_of_claimants_without_commit_are_read(tmp_path):
    storage = ListingStorage(tmp_path)
    committed, killed = (run_commits.ClaimingStorage(storage, run) for run in ("run-1", "run-2"))
    committed.write_bytes(f"{PREFIX}part-same.ndjson", b"{}\n")
    committed.write_bytes(f"{PREFIX}part-committed.ndjson", b"{}\n")
    killed.write_bytes(f"{PREFIX}part-same.ndjson", b"{}\n")  # a rerun of the same archives, killed
    killed.write_bytes(f"{PREFIX}part-killed.ndjson", b"{}\n")
    killed.write_bytes("json/dataset=E/part-killed.ndjson", b"{}\n")
    run_commits.commit(storage, "run-1", {})
    storage.listed.clear()
    assert names(storage) == ["part-committed.ndjson", "part-same.ndjson"]
    assert f"{run_commits.CLAIMED_PREFIX}/run-2/{PREFIX}" in storage.listed
    assert f"{run_commits.CLAIMS_PREFIX}/{PREFIX}" not in storage.listed  # not every claim of the dataset
    assert run_commits.committed_objects(storage, "json/dataset=E/") == []
    run_commits.commit(storage, "run-2", {})
    assert names(storage) == ["part-committed.ndjson", "part-killed.ndjson", "part-same.ndjson"]


def test_an_attempt_that_was_not_taken_stays_unread(tmp_path):
    storage = LocalStorage(tmp_path)
    taken, lost = run_commits.attempt_claimant("run-1"), run_commits.attempt_claimant("run-1")
    run_commits.ClaimingStorage(storage, taken).write_bytes(f"{PREFIX}part-taken.ndjson", b"{}\n")
    run_commits.ClaimingStorage(storage, lost).write_bytes(f"{PREFIX}part-lost.ndjson", b"{}\n")
    run_commits.commit(storage, "run-1", {}, attempts=[taken])
    assert names(storage) == ["part-taken.ndjson"]


def test_claims_from_before_claimants_were_recorded_are_recorded_by_the_first_run_after(tmp_path):
    storage = LocalStorage(tmp_path)
    # an output of before: claims only, one run committed, one killed
    for run, name in (("old-done", "part-old-done.ndjson"), ("old-killed", "part-old-killed.ndjson")):
        storage.write_bytes(run_commits.claim_key(PREFIX + name, run), b"")
        storage.write_bytes(PREFIX + name, b"{}\n")
    run_commits.commit(storage, "old-done", {})
    assert names(storage) == ["part-old-done.ndjson"]  # no claimant recorded: every claim listed
    run_commits.ClaimingStorage(storage, "new").write_bytes(f"{PREFIX}part-new.ndjson", b"{}\n")
    recorded = sorted(info.key for info in storage.list(run_commits.CLAIMANTS_PREFIX + "/"))
    assert recorded == [run_commits.claimant_key(r) for r in ("new", "old-done", "old-killed")]
    assert storage.exists(run_commits.claimed_key(PREFIX + "part-old-killed.ndjson", "old-killed"))
    assert not storage.exists(run_commits.claimed_key(PREFIX + "part-old-done.ndjson", "old-done"))
    run_commits.commit(storage, "new", {})
    assert names(storage) == ["part-new.ndjson", "part-old-done.ndjson"]


class SlowClaimantStorage(LocalStorage):
    """A storage whose stores of a claimant's record are slow and counted."""

    def __init__(self, root):
        super().__init__(root)
        self.claimant_stores = 0

    def write_bytes(self, key, data, metadata=None):
        if key.startswith(run_commits.CLAIMANTS_PREFIX + "/"):
            self.claimant_stores += 1
            time.sleep(0.05)  # wide enough for every thread to reach its first claim meanwhile
        super().write_bytes(key, data, metadata)


def test_threads_storing_through_one_run_record_its_claimant_once(tmp_path):
    storage = SlowClaimantStorage(tmp_path)
    claiming = run_commits.ClaimingStorage(storage, "run-1")
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: claiming.write_bytes(f"{PREFIX}part-{n}.ndjson", b"{}\n"), range(8)))
    assert storage.claimant_stores == 1
    run_commits.commit(storage, "run-1", {})
    assert names(storage) == [f"part-{n}.ndjson" for n in range(8)]
