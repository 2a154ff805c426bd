"""Incremental publish helpers shared by the tests of incremental versions
(tests/publish/test_incremental_parity.py, test_time_partitions.py) and of
what reads them (tests/adapters/test_glue_carried_partitions.py): part files
written by hand as ingest lays them out, publishes on either engine, and the
parity check of an incremental version against a full rebuild."""

from __future__ import annotations

import io
import json
import uuid

import pyarrow.parquet as pq

from bridge_downstream.common import layout, run_commits
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.ingest.outcomes import run_parts_key
from bridge_downstream.publish.engines import publish_dataset_with
from bridge_downstream.publish.manifest import PublishManifest

RECORD_DATASET = "IncrementProbe_v1"  # not in the sample registry: columns inferred from the rows


def record(record_id: str, day: int, uploaded: str, label: str, steps: int = 2) -> list[dict]:
    """One archive's rows for an MTB record uploaded on 2024-01-``day``: a document with a child array."""
    shared = {
        "recordid": record_id,
        "assessmentid": "probe",
        "year": 2024,
        "month": 1,
        "day": day,
        "uploadedon": uploaded,
        "sourcefile": "probe.json",
    }
    return [
        {"label": label, "steps": [{"n": n, "label": label} for n in range(steps)], **shared, "sourceindex": 0},
    ]


def write_part(root, dataset_id: str, partition: dict, tag: str, rows: list[dict]) -> None:
    """A part file stored as an ingest run stores it: the run's parts list, then its commit."""
    key = layout.json_part_key(dataset_id, partition, tag, 0)
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    commit_part_files(root, [{"dataset": dataset_id, "key": key, "size": path.stat().st_size, "partition": partition}])


def commit_part_files(root, parts: list[dict]) -> str:
    """Commit a run (a new id each time) whose parts list is ``parts``; its id."""
    run_id = f"probe-{uuid.uuid4().hex[:12]}"
    storage = LocalStorage(root)
    parts_key = run_parts_key(run_id)
    storage.write_bytes(parts_key, "".join(json.dumps(part) + "\n" for part in parts).encode())
    run_commits.commit(storage, run_id, {"parts": parts_key})
    return run_id


def day_partition(day: int) -> dict:
    return {"assessmentid": "probe", "year": 2024, "month": 1, "day": day}


def publish(engine: str, request, registry, work, published, profile: str, dataset_id: str, **options):
    return publish_dataset_with(
        engine,
        lambda: request.getfixturevalue("spark"),
        dataset_id=dataset_id,
        registry=registry,
        profile=load_profile(profile),
        work=LocalStorage(work),
        published=LocalStorage(published),
        run_id="increment",
        catalog=None,
        **options,
    ).manifest


def table_rows(published, manifest: PublishManifest) -> dict[str, list[str]]:
    """Every table's rows, partition values included, as sorted JSON text."""
    storage = LocalStorage(published)
    tables = {}
    for name, table in manifest.tables.items():
        rows = []
        for file in table.files_of("parquet"):
            for row in pq.read_table(io.BytesIO(storage.read_bytes(file.key))).to_pylist():
                rows.append(json.dumps({**row, **file.partition}, sort_keys=True, default=str))
        assert len(rows) == table.rows
        tables[name] = sorted(rows)
    return tables


def csv_rows(published, manifest: PublishManifest) -> dict[str, int]:
    storage = LocalStorage(published)
    return {
        name: sum(len(storage.read_bytes(f.key).splitlines()) - 1 for f in table.files_of("csv"))
        for name, table in manifest.tables.items()
    }


def check_parity(engine, request, registry, tmp_path, profile: str, dataset_id: str) -> PublishManifest:
    """Publish incrementally into ``published``, and rebuild in full into
    ``rebuilt`` (``full=True``, with the same history of versions): the same tables."""
    incremental = publish(engine, request, registry, tmp_path / "work", tmp_path / "published", profile, dataset_id)
    rebuilt = publish(
        engine, request, registry, tmp_path / "work", tmp_path / "rebuilt", profile, dataset_id, full=True
    )
    assert rebuilt.increment["mode"] == "full"
    assert table_rows(tmp_path / "published", incremental) == table_rows(tmp_path / "rebuilt", rebuilt)
    assert csv_rows(tmp_path / "published", incremental) == csv_rows(tmp_path / "rebuilt", rebuilt)
    assert incremental.record_counts == rebuilt.record_counts
    assert incremental.rescued_values == rebuilt.rescued_values
    return incremental
