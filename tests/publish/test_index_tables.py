"""A version's index tables are Arrow IPC files; a version published before,
whose index is Parquet, is followed by an incremental version all the same
(decision 0031)."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish.increments import (
    COUNTS_NAME,
    KEY_INDEX_NAME,
    PART_INDEX_NAME,
    index_key,
    read_index_table,
    write_index_table,
)
from increment_fixtures import RECORD_DATASET, day_partition, publish, record, table_rows, write_part


def test_an_index_table_reads_back_as_written(tmp_path):
    storage = LocalStorage(tmp_path)
    table = pa.table({"key": ["a\x1fb", "c"], "partition": ["p=1", "p=2"], "winner": [True, False]})
    write_index_table(storage, "D_v1", "v1", KEY_INDEX_NAME, table)
    assert read_index_table(storage, "D_v1", "v1", KEY_INDEX_NAME).equals(table)
    with pa.ipc.open_file(pa.py_buffer(storage.read_bytes(index_key("D_v1", "v1", KEY_INDEX_NAME)))) as reader:
        assert reader.num_record_batches == 1 and reader.schema == table.schema
    assert read_index_table(storage, "D_v1", "v2", KEY_INDEX_NAME) is None


def test_a_version_with_a_parquet_index_is_followed_by_an_incremental_one(request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    storage = LocalStorage(published)
    for day in (1, 2, 3):
        write_part(
            work, RECORD_DATASET, day_partition(day), f"h{day}", record(f"r{day}", day, "2024-01-01T08:00:00.000Z", "a")
        )
    first = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    for name in (KEY_INDEX_NAME, PART_INDEX_NAME, COUNTS_NAME):  # as a version published before wrote them
        arrow_key = index_key(RECORD_DATASET, first.version, name)
        table = read_index_table(storage, RECORD_DATASET, first.version, name)
        table = table.cast(pa.schema([_plain(field) for field in table.schema]))  # no dictionaries then
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        storage.write_bytes(arrow_key.removesuffix(".arrow") + ".parquet", buffer.getvalue())
        storage.delete(arrow_key)
    legacy = read_index_table(storage, RECORD_DATASET, first.version, KEY_INDEX_NAME)
    assert legacy is not None and legacy.num_rows == 3

    # a re-export of r2 on day 3 moves it: the Parquet key index must tell where it was
    write_part(work, RECORD_DATASET, day_partition(3), "d3", record("r2", 3, "2024-01-05T08:00:00.000Z", "b"))
    second = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    assert second.increment["mode"] == "incremental"
    assert second.increment["partitions_rewritten"] == [
        "assessmentid=probe/year=2024/month=01/day=02",
        "assessmentid=probe/year=2024/month=01/day=03",
    ]
    root = [json.loads(row) for row in table_rows(published, second)[f"dataset_{RECORD_DATASET.lower()}"]]
    assert sorted((row["recordid"], row["label"], row["day"]) for row in root) == [
        ("r1", "a", "01"),
        ("r2", "b", "03"),
        ("r3", "a", "03"),
    ]
    keys = read_index_table(storage, RECORD_DATASET, second.version, KEY_INDEX_NAME)
    probe = "assessmentid=probe/year=2024/month=01"
    assert pa.types.is_dictionary(keys.schema.field("partition").type)  # each partition's path once
    assert sorted(keys.to_pylist(), key=lambda row: (row["key"], row["partition"])) == [
        {"key": "r1", "partition": f"{probe}/day=01", "winner": True},  # carried from the Parquet index
        {"key": "r2", "partition": f"{probe}/day=02", "winner": False},
        {"key": "r2", "partition": f"{probe}/day=03", "winner": True},
        {"key": "r3", "partition": f"{probe}/day=03", "winner": True},
    ]


def _plain(field: pa.Field) -> pa.Field:
    return field.with_type(field.type.value_type) if pa.types.is_dictionary(field.type) else field
