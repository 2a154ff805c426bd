"""An incremental publish carries the previous manifest's file lines without
building a file of each (issue 22): the manifest read as lines is the manifest
read in full, a carried line is written back byte for byte, and each file's
partition path read from its folder is the one computed from its values."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish import increments
from bridge_downstream.publish.increments import (
    _merge_by_sorting,
    _merge_in_order,
    _split_by_partition,
    file_partition,
)
from bridge_downstream.publish.manifest import (
    FILE_ORDER,
    FileLines,
    PublishedFile,
    PublishedTable,
    PublishManifest,
    file_line,
    read_manifest,
    read_manifest_lines,
)
from increment_fixtures import RECORD_DATASET, day_partition, publish, record, table_rows, write_part

DATASET, VERSION = "D_v1", "20261205T000000000000Z"
KEYS = ["cohort", "day"]


def _file(cohort: str, day: str, fmt: str = "parquet", table: str = "t", rows: int = 3) -> PublishedFile:
    folder = layout.partition_path({"cohort": cohort, "day": day})
    return PublishedFile(
        key=f"{layout.table_prefix(DATASET, VERSION, fmt, table)}/{folder}/part-{len(cohort)}.{fmt}",
        format=fmt,
        size=10,
        md5="0" * 32,
        sha256="0" * 64,
        rows=rows,
        partition=layout.parse_partition_path(folder),
    )


def _manifest(tables: dict[str, list[PublishedFile]]) -> PublishManifest:
    return PublishManifest(
        dataset_id=DATASET,
        version=VERSION,
        run_id="r",
        created_at="2026-12-05T00:00:00+00:00",
        registry_version="v",
        tables={
            name: PublishedTable(name, DATASET, None, [{"name": "x", "type": "bigint"}], KEYS, 3 * len(files), files)
            for name, files in tables.items()
        },
        plan={"files": [1, 2], "note": '      "files": ['},  # spelled like the tables' files, elsewhere
    )


def test_a_manifest_read_as_lines_is_the_manifest_read_in_full(tmp_path):
    storage = LocalStorage(tmp_path)
    # a partition value holding the closing bracket, after spaces as the closing has them
    bracketed = _file("a]      ]", "01")
    manifest = _manifest(
        {"t": [_file("a", "01"), _file("a", "01", "csv"), bracketed], "u": [], "w": [_file("b", "02")]}
    )
    manifest.store(storage, layout.manifest_key(DATASET, VERSION))

    lines = read_manifest_lines(storage, DATASET, VERSION)
    full = read_manifest(storage, DATASET, VERSION)

    assert all(isinstance(table.files, FileLines) for table in lines.tables.values())
    assert [len(table.files) for table in lines.tables.values()] == [3, 0, 1]
    assert lines.tables["t"].files[2].partition == {"cohort": "a]      ]", "day": "01"}
    assert json.loads(lines.to_json()) == json.loads(full.to_json()) == json.loads(manifest.to_json())
    assert list(lines.tables["t"].files) == manifest.tables["t"].files
    assert lines.tables["t"].files[1] == manifest.tables["t"].files[1]


def test_a_manifest_of_old_spaced_lines_reads_as_lines_too(tmp_path):
    storage = LocalStorage(tmp_path)
    manifest = _manifest({"t": [_file("é/x", "01"), _file("b", "02")]})
    text = manifest.to_json()  # json's Python encoder: each file over several lines
    storage.write_bytes(layout.manifest_key(DATASET, VERSION), text.encode())

    assert json.loads(read_manifest_lines(storage, DATASET, VERSION).to_json()) == json.loads(text)


ODD_COHORTS = ["plain", "a/b=c%", "Zürich", "", "__HIVE_DEFAULT_PARTITION__", 'quote"d', "tab\tbed"]


@pytest.mark.parametrize("table_name", ["t", "odd (name).é+1"])  # a name the pattern must spell literally
def test_each_file_s_partition_path_is_the_one_its_values_give(table_name):
    files = [
        _file(cohort, day, fmt, table_name)
        for cohort in ODD_COHORTS
        for day in ("01", "02")
        for fmt in ("parquet", "csv")
    ]
    table = PublishedTable(table_name, DATASET, None, [], KEYS, 0, FileLines([file_line(f) for f in files]))
    affected = frozenset({file_partition(_file("a/b=c%", "01"), KEYS), file_partition(_file("plain", "02"), KEYS)})

    carried, replaced_lines = _split_by_partition(table, affected)
    replaced = list(FileLines(replaced_lines))

    expected = {f.key: file_partition(f, KEYS) for f in files}
    assert dict(zip(carried.column("key").to_pylist(), carried.column("path").to_pylist())) == {
        key: path for key, path in expected.items() if path not in affected
    }
    assert sorted(f.key for f in replaced) == sorted(key for key, path in expected.items() if path in affected)
    assert len(replaced) == 4
    assert carried.column("line").to_pylist() == [file_line(f) for f in files if expected[f.key] not in affected]


def test_a_folder_in_another_order_than_the_table_s_keys_is_computed_from_its_values():
    moved = PublishedFile(
        key=_file("a", "01").key.replace("cohort=a/day=01", "day=01/cohort=a"),
        format="parquet",
        size=1,
        md5="",
        sha256="",
        rows=1,
        partition={"cohort": "a", "day": "01"},
    )
    # an escape no writer spells so (A is no character to escape): its folder is not its path
    spelled = PublishedFile(**{**_as_dict(moved), "key": moved.key.replace("day=01/cohort=a", "cohort=%41/day=01")})
    spelled = PublishedFile(**{**_as_dict(spelled), "partition": {"cohort": "A", "day": "01"}})
    table = PublishedTable("t", DATASET, None, [], KEYS, 0, FileLines([file_line(moved), file_line(spelled)]))

    carried, replaced = _split_by_partition(table, frozenset({"cohort=a/day=01", "cohort=A/day=01"}))

    assert carried.num_rows == 0 and list(FileLines(replaced)) == [moved, spelled]


def _as_dict(file: PublishedFile) -> dict:
    return {name: getattr(file, name) for name in ("key", "format", "size", "md5", "sha256", "rows", "partition")}


@pytest.mark.parametrize("engine", ["arrow"])
def test_a_delta_writes_the_lines_it_carries_byte_for_byte(engine, request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    for day in (1, 2):
        write_part(
            work, RECORD_DATASET, day_partition(day), f"d{day}", record(f"r{day}", day, "2024-01-01T08:00:00.000Z", "a")
        )
    first = publish(engine, request, registry, work, published, "mtb", RECORD_DATASET)
    write_part(work, RECORD_DATASET, day_partition(3), "d3", record("r3", 3, "2024-01-03T08:00:00.000Z", "b"))
    second = publish(engine, request, registry, work, published, "mtb", RECORD_DATASET)

    before = (published / layout.manifest_key(RECORD_DATASET, first.version)).read_bytes().splitlines()
    after = (published / layout.manifest_key(RECORD_DATASET, second.version)).read_bytes().splitlines()
    carried = [line.strip().rstrip(b",") for line in before if b"/day=01/" in line or b"/day=02/" in line]
    assert len(carried) == 8  # two days, two tables, Parquet and CSV
    assert all(line in {a.strip().rstrip(b",") for a in after} for line in carried)
    stored = read_manifest(LocalStorage(published), RECORD_DATASET, second.version)
    for name, table in second.tables.items():  # the manifest held in memory is the one stored
        assert list(table.files) == stored.tables[name].files
        assert table.rows == stored.tables[name].rows == sum(f.rows for f in table.files if f.format == "parquet")
    assert [table.rows for table in second.tables.values()] == [3, 6]  # three records of two steps each


def _ordered_table(files: list[PublishedFile]) -> PublishedTable:
    ordered = sorted(files, key=lambda f: (f.format, file_partition(f, KEYS), f.key))
    return PublishedTable("t", DATASET, None, [], KEYS, 0, FileLines([file_line(f) for f in ordered]))


@pytest.mark.parametrize("seed", range(20))
def test_merging_by_bisection_gives_the_lines_sorting_gives(seed):
    chooser = random.Random(seed)
    days = [f"{d:02d}" for d in range(1, 31)]
    history = [
        dataclasses.replace(_file(cohort, day, fmt), key=_file(cohort, day, fmt).key.replace(".", f"-{n}."))
        for cohort in ODD_COHORTS
        for day in days
        for fmt in ("parquet", "csv")
        for n in range(chooser.randint(0, 2))  # some partitions hold no file, some two
    ]
    before = _ordered_table(history)
    everything = [(cohort, day) for cohort in ODD_COHORTS for day in [*days, "31"]]  # "31": a new partition
    rewritten = chooser.sample(everything, 3)
    affected = frozenset(file_partition(_file(c, d), KEYS) for c, d in rewritten)
    written = [
        dataclasses.replace(_file(c, d, fmt), key=_file(c, d, fmt).key.replace(VERSION, "20261206T000000000000Z"))
        for c, d in rewritten
        for fmt in ("parquet", "csv")
    ]

    by_bisection = _merge_in_order(before, affected, written, in_order=True)
    by_sorting = _merge_by_sorting(before, affected, written)

    assert by_bisection is not None
    assert by_bisection.files.lines == by_sorting.files.lines
    assert sorted(by_bisection.replaced) == sorted(by_sorting.replaced)
    assert by_bisection.carried is by_sorting.carried is (len(history) > len(by_sorting.replaced))
    replaced_paths = {file_partition(f, KEYS) for f in FileLines(by_bisection.replaced)}
    assert replaced_paths <= affected
    assert len(by_bisection.files) == len(history) - len(by_bisection.replaced) + len(written)


def test_a_table_in_no_promised_order_or_a_large_rewrite_is_merged_by_sorting():
    files = [
        _file(cohort, f"{d:02d}", fmt) for cohort in ODD_COHORTS for d in range(1, 31) for fmt in ("parquet", "csv")
    ]
    ordered = _ordered_table(files)
    one = frozenset({file_partition(files[0], KEYS)})
    assert _merge_in_order(ordered, one, [], in_order=False) is None
    assert _merge_in_order(ordered, frozenset(file_partition(f, KEYS) for f in files), [], in_order=True) is None
    assert _merge_in_order(ordered, one, [], in_order=True) is not None


def test_a_delta_lists_its_files_in_order_and_the_next_one_merges_by_bisection(
    request, registry, tmp_path, monkeypatch
):
    work, published = tmp_path / "work", tmp_path / "published"
    for day in range(1, 101):  # enough partitions that bisecting costs less than sorting
        write_part(
            work, RECORD_DATASET, day_partition(day), f"d{day}", record(f"r{day}", day, "2024-01-01T08:00:00.000Z", "a")
        )
    full = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    write_part(work, RECORD_DATASET, day_partition(101), "d101", record("r101", 101, "2024-01-09T08:00:00.000Z", "b"))
    first = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    assert "file_order" not in full.increment  # a full version's files come in the order they were written
    stored = read_manifest(LocalStorage(published), RECORD_DATASET, first.version)
    assert stored.increment["file_order"] == FILE_ORDER
    # named in the increment, a free-form field: the tables hold the fields an earlier release reads
    document = json.loads((published / layout.manifest_key(RECORD_DATASET, first.version)).read_bytes())
    assert {frozenset(table) for table in document["tables"].values()} == {
        frozenset({"name", "dataset_id", "parent", "columns", "partition_keys", "rows", "files"})
    }
    for table in stored.tables.values():
        assert [(f.format, file_partition(f, table.partition_keys), f.key) for f in table.files] == sorted(
            (f.format, file_partition(f, table.partition_keys), f.key) for f in table.files
        )

    def no_sorting(*_args):
        raise AssertionError("a delta on an ordered version sorted every line")

    monkeypatch.setattr(increments, "_merge_by_sorting", no_sorting)
    write_part(work, RECORD_DATASET, day_partition(3), "d3b", record("x3", 3, "2024-01-03T09:00:00.000Z", "c"))
    second = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    assert second.increment["partitions_rewritten"] == ["assessmentid=probe/year=2024/month=01/day=03"]
    assert {t: len(rows) for t, rows in table_rows(published, second).items()} == {
        t: len(rows) + (1 if t == f"dataset_{RECORD_DATASET.lower()}" else 2)
        for t, rows in table_rows(published, first).items()
    }
