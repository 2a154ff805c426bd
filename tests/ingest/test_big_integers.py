"""Integers beyond 64 bits reach the datasets and the tables whole."""

from __future__ import annotations

import duckdb

from bridge_downstream.common import jsoncodec
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish import DuckDBCatalog, publish_dataset_with
from support import ingest_folder, mtb_metadata, read_dataset, write_archive

BIG = {"beyond_uint64": 2**70 + 1, "uint64_max": 2**64 - 1, "below_int64": -(2**63) - 1, "small": 7}


def test_the_codec_reads_and_writes_integers_of_any_size_exactly():
    text = b'{"a": 1180591620717411303425, "b": [18446744073709551617], "c": "12345678901234567890", "d": 1.5}'
    value = jsoncodec.parse(text)
    assert value == {"a": 2**70 + 1, "b": [2**64 + 1], "c": "12345678901234567890", "d": 1.5}
    line = jsoncodec.Rows({"recordid": "r"}).block([value])
    assert jsoncodec.parse(line) == {**value, "recordid": "r", "sourceindex": 0}


def test_a_legacy_document_of_big_integers_is_ingested_and_published_whole(registry, tmp_path):
    folder = tmp_path / "in"
    metadata = mtb_metadata("rec-big", assessment="legacy-survey")
    write_archive(folder / "big.zip", {"metadata.json": {"taskIdentifier": "x"}, "answers.json": BIG}, metadata)
    write_archive(folder / "other.zip", {"answers.json": {"small": 1}}, mtb_metadata("rec-other", "legacy-survey"))
    output = tmp_path / "out"

    report = ingest_folder(folder, output, registry)

    assert report["archives"] == {"total": 2, "processed": 2, "invalid": 0, "skipped": 0}
    # The one row holding integers beyond 64 bits is counted (uint64_max fits orjson: it is not).
    assert report["integers_beyond_int64"] == {"rows": {"SurveyAnswers_v1": 1}}
    rows = {row["recordid"]: row for row in read_dataset(output, "SurveyAnswers_v1")}
    assert {name: rows["rec-big"][name] for name in BIG} == BIG
    storage = LocalStorage(output)
    publish_dataset_with(
        "arrow",
        None,
        dataset_id="SurveyAnswers_v1",
        registry=registry,
        profile=load_profile("mtb"),
        work=storage,
        published=storage,
        run_id="r",
        catalog=DuckDBCatalog(storage),
    )
    with duckdb.connect(str(output / "catalog.duckdb"), read_only=True) as connection:
        published = connection.sql(
            "SELECT recordid, beyond_uint64, uint64_max, below_int64, small FROM dataset_surveyanswers_v1 ORDER BY 1"
        ).fetchall()
    assert [(r, *(None if v is None else int(v) for v in values)) for r, *values in published] == [
        ("rec-big", 2**70 + 1, 2**64 - 1, -(2**63) - 1, 7),
        ("rec-other", None, None, None, 1),
    ]


def test_a_run_without_wide_integers_reports_none(registry, tmp_path):
    folder = tmp_path / "in"
    write_archive(folder / "a.zip", {"answers.json": [{"n": 2**63 - 1}, {"n": 1}]}, mtb_metadata("r", "legacy-survey"))
    report = ingest_folder(folder, tmp_path / "out", registry)
    assert report["archives"]["processed"] == 1
    assert report["integers_beyond_int64"] == {"rows": {}}


def test_an_export_counts_its_rows_with_wide_integers(registry, tmp_path):
    folder = tmp_path / "in"
    lines = b'{"LogId": 1, "Big": 1180591620717411303425}\n{"LogId": 2, "Big": 3}\n{"LogId": 3, "Big": -9223372036854775809}\n'
    write_archive(folder / "export.zip", {"FitbitSleepLogs_20240102.json": lines}, {"cohort": "adults"})
    output = tmp_path / "out"
    report = ingest_folder(folder, output, registry, profile="recover")
    assert report["archives"]["processed"] == 1
    assert report["integers_beyond_int64"] == {"rows": {"FitbitSleepLogs": 2}}
    assert [row["Big"] for row in read_dataset(output, "FitbitSleepLogs")] == [2**70 + 1, 3, -(2**63) - 1]
