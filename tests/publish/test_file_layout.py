"""The published files' layout (publish/file_layout.py): rows sorted by the
natural key within a file, statistics and page indexes written, and no file
of a partition smaller than the target unless the partition holds less."""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from bridge_downstream.publish.file_layout import (
    TARGET_FILE_BYTES_VARIABLE,
    layout_for,
    sort_columns,
)
from bridge_downstream.publish.spark_engine import publish_dataset
from support import ingest_folder

TARGET = 50_000  # bytes: small enough that a partition of the test spans several files


def _export(folder: Path, cohort: str, name: str, rows: list[dict]) -> None:
    path = folder / "recover" / "pilot" / cohort / name
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("FitbitSleepLogs_20230112-20230114.json", "".join(json.dumps(r) + "\n" for r in rows))
    path.write_bytes(buffer.getvalue())


def _sleep_log(participant: int, log: int) -> dict:
    return {
        "ParticipantIdentifier": f"RX-{participant:03d}",
        "LogId": f"{log:06d}",
        "InsertedDate": "2023-01-13T00:00:00Z",
        "Duration": str(log * 7 % 1000),
        "Efficiency": "93",
        "Type": random.Random(participant * 1000 + log).randbytes(100).hex(),  # incompressible: sizes follow rows
    }


@pytest.fixture(scope="module")
def history(tmp_path_factory, registry) -> Path:
    """Ten exports of shuffled sleep logs into a large cohort, one small export into another."""
    out = tmp_path_factory.mktemp("out")
    shuffled = random.Random(22)
    keys = [(p, log) for p in range(40) for log in range(30)]
    shuffled.shuffle(keys)
    for number in range(10):  # one ingest run each: a part file each
        folder = tmp_path_factory.mktemp(f"in{number}")
        rows = [_sleep_log(p, log) for p, log in keys[number::10]]
        _export(folder, "adults_v1", f"2023-01-{number + 10:02d}.zip", rows)
        if number == 0:
            _export(folder, "pediatric_v1", "2023-01-10.zip", [_sleep_log(900, 1), _sleep_log(900, 0)])
        ingest_folder(folder, out, registry, profile="recover")
    return out


def _publish(engine: str, root: Path, registry, request):
    storage = LocalStorage(root)
    arguments = {
        "dataset_id": "FitbitSleepLogs",
        "registry": registry,
        "profile": load_profile("recover"),
        "work": storage,
        "published": storage,
        "run_id": f"layout-{engine}",
    }
    if engine == "spark":
        return publish_dataset(request.getfixturevalue("spark"), **arguments).manifest
    return publish_dataset_arrow(**arguments, chunk_bytes=4096).manifest  # one chunk per export or so


@pytest.mark.parametrize("engine", ["arrow", pytest.param("spark", marks=pytest.mark.spark)])
def test_published_files_are_sorted_indexed_and_at_least_the_target(
    engine, history, registry, request, monkeypatch, tmp_path
):
    monkeypatch.setenv(TARGET_FILE_BYTES_VARIABLE, str(TARGET))
    manifest = _publish(engine, history, registry, request)
    table = manifest.tables["dataset_fitbitsleeplogs"]
    assert table.rows == 40 * 30 + 2
    by_partition: dict[str, list] = {}
    for file in table.files_of("parquet"):
        by_partition.setdefault(file.partition["cohort"], []).append(file)
    assert set(by_partition) == {"adults_v1", "pediatric_v1"}

    for cohort, files in by_partition.items():
        sizes = [f.size for f in files]
        partition_bytes = sum(sizes)
        for size in sizes:
            assert size >= TARGET or partition_bytes < TARGET, (cohort, sizes)
        for file in files:
            parquet = pq.ParquetFile(history / file.key)
            rows = parquet.read().to_pylist()
            keys = [(r["ParticipantIdentifier"], r["LogId"]) for r in rows]
            assert keys == sorted(keys), (cohort, file.key)
            metadata = parquet.metadata
            for group in range(metadata.num_row_groups):
                for column in range(metadata.num_columns):
                    chunk = metadata.row_group(group).column(column)
                    assert chunk.is_stats_set, (file.key, chunk.path_in_schema)
                    assert chunk.has_column_index and chunk.has_offset_index, (file.key, chunk.path_in_schema)
    if engine == "arrow":  # ten exports, read in chunks: the large cohort's per-chunk files were merged
        assert len(by_partition["adults_v1"]) < 10
    assert len(by_partition["pediatric_v1"]) == 1
    csv_files = table.files_of("csv")
    assert sorted(f.partition["cohort"] for f in csv_files) == sorted(
        f.partition["cohort"] for f in table.files_of("parquet")
    )


def test_sort_columns_are_the_natural_key_then_time_as_the_table_names_them(registry, history):
    from bridge_downstream.publish.engine_steps import plan_dataset

    profile = load_profile("recover")
    plan, _ = plan_dataset(registry, profile, "FitbitSleepLogs", LocalStorage(history))
    assert sort_columns(plan, plan.root, profile.dedup.order_by) == [
        "ParticipantIdentifier",
        "LogId",
        "InsertedDate",
        "export_end_date",
    ]


def test_the_target_is_large_on_glue_and_small_locally(monkeypatch):
    monkeypatch.delenv(TARGET_FILE_BYTES_VARIABLE, raising=False)
    assert layout_for("spark", "glue").target_file_bytes == 128 << 20
    assert layout_for("arrow", "local").target_file_bytes == 8 << 20
    monkeypatch.setenv(TARGET_FILE_BYTES_VARIABLE, "1000")
    assert layout_for("spark", "glue").target_file_bytes == 1000
    with pytest.raises(ValueError, match="no file layout"):
        layout_for("pandas", "local")
