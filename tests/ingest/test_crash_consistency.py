"""A run killed anywhere leaves nothing that is read: its part files count
only once it has committed (after its ledger), so publish sees none or all of
its rows, and its rerun publishes what one clean run publishes.

The killed run is a child process that kills itself (SIGKILL: no clean-up, as
a machine that dies) at a chosen point, into a local folder and into S3
(moto's server, one for the module)."""

from __future__ import annotations

import io
import itertools
import json
import multiprocessing
import os
import signal
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest

from aws_emulator import moto_server
from bridge_downstream.common import run_commits
from bridge_downstream.common.storage import LocalStorage, delete_prefix
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.ingest import part_writer
from bridge_downstream.ingest.context import IngestContext
from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream.ingest.outcomes import finish_run, load_ledger
from bridge_downstream.ingest.run import new_run_id, process_batch, run_ingest
from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from bridge_downstream.publish.engine_steps import iter_dataset_rows, json_datasets
from bridge_downstream_adapters.s3 import S3Storage
from project_paths import PROJECT_ROOT

PROFILE = load_profile("mtb")
BUCKET = "crash-consistency"


@pytest.fixture(scope="module")
def batches(tmp_path_factory) -> tuple[list[ArchiveInput], list[ArchiveInput]]:
    """Two batches of generated uploads: the one ingested first, and the one whose run is killed."""
    sys.path.insert(0, str(PROJECT_ROOT / "bench"))
    from generate import generate

    folder = tmp_path_factory.mktemp("uploads")
    generate(folder, records=20, motion=2, steps=1, per_day=4, jobs=1)
    storage = LocalStorage(folder)
    keys = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.zip"))
    inputs = [ArchiveInput(storage, key) for key in keys]
    return inputs[:8], inputs[8:]


def ingest(inputs, output, registry, workers: int = 1) -> dict:
    return run_ingest(
        inputs, registry=registry, profile=PROFILE, output=output, sink=StorageInvalidSink(output), workers=workers
    )


def published_rows(work, registry, root: Path) -> dict[str, list]:
    """Every published table's rows (partition values included), as the Arrow engine publishes ``work``."""
    published = LocalStorage(root)
    tables = {}
    for dataset_id in json_datasets(work):
        manifest = publish_dataset_arrow(
            dataset_id=dataset_id, registry=registry, profile=PROFILE, work=work, published=published, run_id="check"
        ).manifest
        for name, table in manifest.tables.items():
            rows = []
            for file in table.files_of("parquet"):
                for row in pq.read_table(io.BytesIO(published.read_bytes(file.key))).to_pylist():
                    rows.append(repr(sorted({**row, **file.partition}.items())))
            tables[name] = sorted(rows)
    return tables


def readable_rows(work) -> dict[str, list]:
    """Every NDJSON row that readers take (publish's input, before dedup), per dataset."""
    return {dataset_id: sorted(map(repr, iter_dataset_rows(work, dataset_id))) for dataset_id in json_datasets(work)}


def state(work, registry, root: Path) -> dict:
    """What readers see of an output: its NDJSON rows, its published rows, its ledger's size."""
    return {
        "rows": readable_rows(work),
        "published": published_rows(work, registry, root),
        "ledger": len(load_ledger(work)),
    }


def record_ids(tables: dict[str, list]) -> Counter:
    """Record ids of the archive metadata table, with how often each is there."""
    return Counter(row.split("('recordid', ")[1].split(")")[0] for row in tables["dataset_archivemetadata_v1"])


@pytest.fixture(scope="module")
def clean(batches, registry, tmp_path_factory) -> dict:
    """What clean runs leave: of the first batch alone, and of both (each ingested once)."""
    first, second = batches
    root = tmp_path_factory.mktemp("clean")
    output = LocalStorage(root / "work")
    ingest(first, output, registry)
    only_first = state(output, registry, root / "first")
    processed = ingest(second, output, registry)["archives"]["processed"]
    both = state(output, registry, root / "both")
    assert record_ids(both["published"]).most_common(1)[0][1] == 1  # each record once
    assert len(record_ids(both["published"])) > len(record_ids(only_first["published"])) > 0
    assert both["ledger"] == only_first["ledger"] + processed
    return {"first": only_first, "both": both, "processed": processed}


class KillingStorage:
    """``storage`` that kills its process at one point of a run: ``when(moment,
    key)`` is asked before and after each object is stored."""

    def __init__(self, storage, when):
        self.storage, self.when = storage, when

    def __getattr__(self, name):
        return getattr(self.storage, name)

    def _stored(self, store, key: str, *args) -> None:
        if self.when("before", key):
            os.kill(os.getpid(), signal.SIGKILL)
        store(*args)
        if self.when("after", key):
            os.kill(os.getpid(), signal.SIGKILL)

    def write_bytes(self, key, data, metadata=None):
        self._stored(self.storage.write_bytes, key, key, data, metadata)

    def move_in(self, local_path, key):
        self._stored(self.storage.move_in, key, local_path, key)

    def upload_file(self, local_path, key):
        self._stored(self.storage.upload_file, key, local_path, key)


def after_part_files(count: int):
    stored = itertools.count(1)
    return lambda moment, key: (
        moment == "after" and key.startswith("json/") and key.endswith(".ndjson") and next(stored) == count
    )


def is_run_report(key: str) -> bool:
    return key.startswith("reports/") and key.count("/") == 1 and key.endswith(".json")


# (where the run dies, whether it has committed by then)
KILL_POINTS = {
    "after its third part file": (after_part_files(3), False),
    "after its ledger": (lambda moment, key: moment == "after" and key.endswith(".digests"), False),
    "before its commit": (lambda moment, key: moment == "before" and key.startswith("commits/"), False),
    "after its commit, before its report": (lambda moment, key: moment == "before" and is_run_report(key), True),
}


def run_killed(inputs, make_output, registry, when, workers: int = 1) -> int:
    """Ingest ``inputs`` in a child process that dies where ``when`` says; its exit code."""

    def child() -> None:
        # A part file published mid-run (a task stages only so many), not only at the task's end.
        part_writer.MAX_STAGED_PARTS = 2
        output = KillingStorage(make_output(), when)
        ingest(inputs, output, registry, workers=workers)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(timeout=300)
    assert process.exitcode is not None, "the killed run did not end"
    return process.exitcode


def part_file_count(output) -> int:
    return sum(1 for info in output.list("json/") if info.key.endswith(".ndjson"))


def check_kill_and_rerun(batches, clean, registry, make_output, tmp_path, point: str) -> None:
    first, second = batches
    when, committed = KILL_POINTS[point]
    output = make_output()
    ingest(first, output, registry)
    parts_before = part_file_count(output)

    assert run_killed(second, make_output, registry, when) == -signal.SIGKILL

    # The killed run's part files are there, and readers take all of them, with
    # its ledger, or none.
    assert part_file_count(output) > parts_before
    assert state(output, registry, tmp_path / "after-kill") == clean["both" if committed else "first"]

    # The rerun completes; it ingests the batch again unless the killed run had committed.
    report = ingest(second, output, registry)
    assert report["archives"]["processed"] == (0 if committed else clean["processed"])
    assert report["archives"]["skipped"] == (clean["processed"] if committed else 0)
    rerun = state(output, registry, tmp_path / "rerun")
    assert rerun == clean["both"]  # every row once, before dedup as after
    assert max(record_ids(rerun["published"]).values()) == 1


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_run_killed_locally_is_read_whole_or_not_at_all(batches, clean, registry, tmp_path, point):
    check_kill_and_rerun(batches, clean, registry, lambda: LocalStorage(tmp_path / "work"), tmp_path, point)


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_server() as endpoint:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint


@pytest.mark.parametrize(
    "point", ["after its third part file", "after its ledger", "after its commit, before its report"]
)
def test_a_run_killed_on_s3_is_read_whole_or_not_at_all(batches, clean, registry, s3_endpoint, tmp_path, point):
    prefix = f"ns/app/{tmp_path.name}"
    check_kill_and_rerun(
        batches, clean, registry, lambda: S3Storage(BUCKET, prefix, endpoint_url=s3_endpoint), tmp_path, point
    )


def test_a_worker_killed_fails_the_run_which_leaves_nothing_read(batches, clean, registry, tmp_path):
    """A worker process killed mid-task: the run fails before its commit; the rerun publishes the clean rows."""
    first, second = batches
    output = LocalStorage(tmp_path / "work")
    ingest(first, output, registry)
    exit_code = run_killed(second, lambda: LocalStorage(tmp_path / "work"), registry, after_part_files(2), workers=2)
    assert exit_code == 1  # the run raised: a worker died
    assert state(output, registry, tmp_path / "after-kill") == clean["first"]
    assert ingest(second, output, registry, workers=2)["archives"]["processed"] == clean["processed"]
    assert state(output, registry, tmp_path / "rerun") == clean["both"]


def test_a_task_attempted_again_counts_with_the_attempt_the_run_took_only(batches, clean, registry, tmp_path):
    """As on Glue, where Spark runs a task again when its executor is lost: the
    lost attempt's part files (here of fewer archives, so named otherwise) are
    never read; the run commits the attempt whose result it collected."""
    first, _ = batches
    output = LocalStorage(tmp_path / "work")
    ctx = IngestContext(registry, PROFILE, already_ingested=load_ledger(output))
    run_id = new_run_id()
    lost = process_batch(0, first[:3], ctx, output, run_id, attempt=run_commits.attempt_claimant(run_id))
    lost_parts = {json.loads(line)["key"] for line in output.read_bytes(lost.parts_key).splitlines()}
    taken = process_batch(0, first, ctx, output, run_id, attempt=run_commits.attempt_claimant(run_id))
    assert lost.attempt != taken.attempt and lost_parts
    finish_run(run_id, ctx, [taken], datetime.now(UTC), output, StorageInvalidSink(output))
    taken_parts = {json.loads(line)["key"] for line in output.read_bytes(f"reports/{run_id}.parts.jsonl").splitlines()}
    assert lost_parts - taken_parts and all(output.exists(key) for key in lost_parts)
    assert state(output, registry, tmp_path / "published") == clean["first"]


def test_outputs_written_before_commits_existed_publish_the_same_rows(batches, clean, registry, tmp_path):
    """An output whose runs predate claims and commit records (none under
    ``claims/`` or ``commits/``) reads every part file and ledger file as
    before: the same rows, the same ledger. A run killed on top of it and its
    rerun change that as they would for any output."""
    first, second = batches
    output = LocalStorage(tmp_path / "work")
    ingest(first, output, registry)
    ingest(second, output, registry)
    assert delete_prefix(output, run_commits.CLAIMS_PREFIX + "/") > 0
    assert delete_prefix(output, run_commits.COMMITS_PREFIX + "/") == 2
    assert state(output, registry, tmp_path / "legacy") == clean["both"]
    assert ingest(second, output, registry)["archives"]["processed"] == 0  # the old ledger still counts

    # A part file that a run of before left behind (it was always read) is read still.
    legacy_output = LocalStorage(tmp_path / "legacy-work")
    ingest(first, legacy_output, registry)
    delete_prefix(legacy_output, run_commits.CLAIMS_PREFIX + "/")
    delete_prefix(legacy_output, run_commits.COMMITS_PREFIX + "/")
    assert (
        run_killed(second, lambda: LocalStorage(tmp_path / "legacy-work"), registry, KILL_POINTS["after its ledger"][0])
        == -signal.SIGKILL
    )
    assert state(legacy_output, registry, tmp_path / "legacy-killed") == clean["first"]
    ingest(second, legacy_output, registry)
    assert state(legacy_output, registry, tmp_path / "legacy-rerun") == clean["both"]


def test_only_objects_of_runs_without_commit_are_left_unread(tmp_path):
    storage = LocalStorage(tmp_path)
    prefix = "json/dataset=D/"
    for name in ("by-hand", "committed", "uncommitted", "rewritten"):
        storage.write_bytes(f"{prefix}part-{name}-00000.ndjson", b"{}\n")
    claiming = {run: run_commits.ClaimingStorage(storage, run) for run in ("run-1", "run-2", "run-3")}
    claiming["run-1"].write_bytes(f"{prefix}part-committed-00000.ndjson", b"{}\n")
    claiming["run-2"].write_bytes(f"{prefix}part-uncommitted-00000.ndjson", b"{}\n")
    # The same key stored by a committed run and again by one that died: its rows are read.
    claiming["run-1"].write_bytes(f"{prefix}part-rewritten-00000.ndjson", b"{}\n")
    claiming["run-3"].write_bytes(f"{prefix}part-rewritten-00000.ndjson", b"{}\n")
    claiming["run-3"].write_bytes("json/dataset=D_Deleted/part-x-00000.ndjson", b"{}\n")
    run_commits.commit(storage, "run-1", {})
    names = [info.key.rsplit("/", 1)[1] for info in run_commits.committed_part_files(storage, "D")]
    assert names == [
        "part-by-hand-00000.ndjson",
        "part-committed-00000.ndjson",
        "part-rewritten-00000.ndjson",
    ]
    assert run_commits.committed_part_files(storage, "D_Deleted") == []
    assert json_datasets(storage) == ["D"]  # D_Deleted holds only a run's part file that never committed
    run_commits.commit(storage, "run-2", {})
    assert "part-uncommitted-00000.ndjson" in {
        info.key.rsplit("/", 1)[1] for info in run_commits.committed_part_files(storage, "D")
    }
    with pytest.raises(ValueError, match="is no run id"):
        run_commits.claim_key("json/x.ndjson", "a/b")
