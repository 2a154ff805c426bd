"""A publish's file list is spooled, not held in memory, and its manifest is
the same document whether the files come from a spool or from a list."""

from __future__ import annotations

import json

from bridge_downstream.common.spool import JsonLinesSpool, read_lines
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from bridge_downstream.publish.manifest import (
    PublishedFile,
    PublishedFiles,
    PublishedTable,
    PublishManifest,
    read_manifest,
)
from support import SAMPLES, build_sample_registry, ingest_folder


def _file(number: int, fmt: str = "parquet") -> PublishedFile:
    return PublishedFile(
        key=f"published/D_v1/v/{fmt}/t/day={number:02d}/part-0.{fmt}",
        format=fmt,
        size=100 + number,
        md5=f"{number:032x}",
        sha256=f"{number:064x}",
        rows=number,
        partition={"day": f"{number:02d}"},
    )


def _manifest(files_of_t, files_of_e) -> PublishManifest:
    tables = {
        "t": PublishedTable("t", "D_v1", None, [{"name": "x", "type": "bigint"}], ["day"], 6, files_of_t),
        "e": PublishedTable("e", "D_v1", "t", [], [], 0, files_of_e),
    }
    return PublishManifest("D_v1", "v", "run", "2026-11-24T00:00:00+00:00", "reg-1", tables=tables)


def test_a_spool_reads_back_every_value_in_order_any_number_of_times(tmp_path):
    spool = JsonLinesSpool()
    values = [{"n": n, "text": 'é\n"quoted"'} for n in range(5000)]
    for value in values[:10]:
        spool.append(value)
    assert list(spool) == values[:10]
    for value in values[10:]:  # appending after a read continues the same list
        spool.append(value)
    assert len(spool) == 5000
    assert list(spool) == values
    assert list(spool) == values


def test_read_lines_splits_across_blocks_and_leaves_the_offset_alone(tmp_path):
    path = tmp_path / "lines"
    path.write_bytes(b"alpha\nbeta\n\ngamma-delta\n")
    with open(path, "rb") as stream:
        stream.seek(3)
        assert list(read_lines(stream.fileno(), block=4)) == [b"alpha", b"beta", b"", b"gamma-delta"]
        assert stream.tell() == 3


def test_a_manifest_of_spooled_files_is_the_document_of_listed_files(tmp_path):
    listed = [_file(n) for n in range(1, 4)] + [_file(n, "csv") for n in range(1, 4)]
    spooled = PublishedFiles(listed)
    assert len(spooled) == 6
    assert list(spooled) == listed
    storage = LocalStorage(tmp_path)
    _manifest(spooled, PublishedFiles()).store(storage, "spooled.json")
    _manifest(listed, []).store(storage, "listed.json")
    assert storage.read_bytes("spooled.json") == storage.read_bytes("listed.json")
    document = json.loads(storage.read_bytes("spooled.json"))
    assert [f["key"] for f in document["tables"]["t"]["files"]] == [f.key for f in listed]
    assert document["tables"]["e"]["files"] == []
    back = PublishManifest.from_json(storage.read_bytes("spooled.json"))
    assert back.tables["t"].files == listed
    assert back.tables["t"].files_of("csv") == listed[3:]
    assert json.loads(_manifest(spooled, PublishedFiles()).to_json()) == document


def test_a_publish_describes_its_files_in_a_spool_and_stores_them_all(tmp_path):
    registry = build_sample_registry(tmp_path / "registry")
    ingest_folder(SAMPLES / "archives", tmp_path / "work", registry)
    work, published = LocalStorage(tmp_path / "work"), LocalStorage(tmp_path / "published")
    result = publish_dataset_arrow(
        dataset_id="TaskData_v1",
        registry=registry,
        profile=load_profile("mtb"),
        work=work,
        published=published,
        run_id="r",
    )
    stored = read_manifest(published, "TaskData_v1", result.manifest.version)
    assert set(stored.tables) == set(result.manifest.tables)
    for name, table in result.manifest.tables.items():
        assert isinstance(table.files, PublishedFiles)
        on_disk = sorted(info.key for info in published.list(table.location(result.manifest.version, "parquet") + "/"))
        assert sorted(f.key for f in table.files_of("parquet")) == on_disk, name
        assert len(table.files) == 2 * len(on_disk) > 0, name  # a CSV per Parquet file
        assert list(table.files) == stored.tables[name].files, name
        assert table.rows == sum(f.rows for f in stored.tables[name].files_of("parquet")) > 0, name
