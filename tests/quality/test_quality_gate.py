"""The expectations run after every publish (docs/quality.md): a recover
expectation flags exactly the rows seeded out of range, with their keys, in
the manifest and the HTML report; a ``block`` expectation keeps the previous
version current; a passing run records passed results. On both engines."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.expectations import Expectation
from bridge_downstream.config.profiles import Profile, load_profile
from bridge_downstream.publish.engines import publish_dataset_with
from bridge_downstream.publish.manifest import current_version, read_manifest
from bridge_downstream.quality import REPORT_NAME
from bridge_downstream.quality.runner import PandasTables
from bridge_downstream_cli.quality_commands import with_quality_check
from support import ingest_folder, write_archive

DATASET = "FitbitSleepLogs"
OUT_OF_RANGE = {("RX-0002", "RX-0002-sleep-1"): "5000", ("RX-0003", "RX-0003-sleep-0"): "-3"}


def sleep_logs(out_of_range: dict[tuple[str, str], str]) -> list[dict]:
    rows = []
    for participant in ("RX-0001", "RX-0002", "RX-0003"):
        for night in range(2):
            log_id = f"{participant}-sleep-{night}"
            rows.append(
                {
                    "ParticipantIdentifier": participant,
                    "LogId": log_id,
                    "StartDate": f"2024-01-0{night + 1}T22:00:00",
                    "MinutesAsleep": out_of_range.get((participant, log_id), str(400 + night)),
                    "InsertedDate": "2024-01-05T03:00:00Z",
                }
            )
    return rows


def export_archive(folder: Path, name: str, rows: list[dict]) -> None:
    write_archive(
        folder / name,
        {f"{DATASET}_20240101-20240105.json": "\n".join(json.dumps(row) for row in rows) + "\n"},
        metadata={"cohort": "adults_v1"},
    )


def ingest_and_publish(
    tmp_path: Path, registry, rows: list[dict], profile: Profile, export: str, engine="arrow", spark=None
):
    """One more export of ``rows`` ingested into ``tmp_path/out`` and published with the
    profile's quality check, as the command line does (on Spark, checked by Spark)."""
    folder = tmp_path / "in" / export
    export_archive(folder, f"recover-{export}.zip", rows)
    ingest_folder(folder, tmp_path / "out", registry, profile="recover")
    storage = LocalStorage(tmp_path / "out")
    arguments = {
        "dataset_id": DATASET,
        "registry": registry,
        "profile": profile,
        "work": storage,
        "published": storage,
        "run_id": export,
    }
    return storage, with_quality_check(profile, publish_dataset_with)(engine, lambda: spark, **arguments).manifest


def minutes_asleep_result(manifest) -> dict:
    [result] = [r for r in manifest.quality["results"] if r["expectation"].startswith("MinutesAsleep between")]
    return result


def flagged_keys(result: dict) -> set[tuple[str, str]]:
    return {(s["key"]["ParticipantIdentifier"], s["key"]["LogId"]) for s in result["samples"]}


def test_a_recover_expectation_flags_exactly_the_rows_seeded_out_of_range(tmp_path, registry):
    storage, manifest = ingest_and_publish(tmp_path, registry, sleep_logs(OUT_OF_RANGE), load_profile("recover"), "a")

    result = minutes_asleep_result(manifest)
    assert result["passed"] is False
    assert result["policy"] == "warn"
    assert result["unexpected_count"] == 2
    assert result["element_count"] == 6
    assert flagged_keys(result) == set(OUT_OF_RANGE)
    assert sorted(s["value"] for s in result["samples"]) == [-3, 5000]
    # warn: published and current all the same
    assert manifest.quality["passed"] is False and manifest.quality["blocked"] is False
    assert current_version(storage, DATASET) == manifest.version
    # the stored manifest holds the same results
    assert read_manifest(storage, DATASET, manifest.version).quality == manifest.quality
    html = storage.read_bytes(f"{layout.version_prefix(DATASET, manifest.version)}/{REPORT_NAME}").decode()
    assert manifest.quality["report"].endswith(REPORT_NAME)
    for participant, log_id in OUT_OF_RANGE:
        assert log_id in html and participant in html
    assert "<script" not in html and "http" not in html  # self-contained


def test_a_passing_run_records_passed_results(tmp_path, registry):
    storage, manifest = ingest_and_publish(tmp_path, registry, sleep_logs({}), load_profile("recover"), "a")

    assert manifest.quality["passed"] is True
    results = manifest.quality["results"]
    assert len(results) == 2 + 12  # every dataset's two, recover's twelve for sleep logs
    assert all(r["passed"] for r in results)
    assert minutes_asleep_result(manifest)["unexpected_count"] == 0
    unique = next(r for r in results if r["kind"] == "unique")
    assert unique["element_count"] == 6 and unique["unexpected_count"] == 0
    assert current_version(storage, DATASET) == manifest.version


def blocking(profile: Profile) -> Profile:
    """The profile with a blocking range on MinutesAsleep."""
    expectations = {
        DATASET: {"root": (Expectation(kind="between", column="MinutesAsleep", min=0, max=1440, policy="block"),)}
    }
    return dataclasses.replace(profile, expectations=expectations)


def test_a_block_expectation_keeps_the_previous_version_current(tmp_path, registry):
    profile = blocking(load_profile("recover"))
    storage, first = ingest_and_publish(tmp_path, registry, sleep_logs({}), profile, "a")
    assert current_version(storage, DATASET) == first.version and first.quality["passed"]

    later_rows = [{**row, "LogId": row["LogId"] + "-b"} for row in sleep_logs({})]
    later_rows[0]["MinutesAsleep"] = "1441"
    _, second = ingest_and_publish(tmp_path, registry, later_rows, profile, "b")

    assert second.blocked_by_quality
    assert current_version(storage, DATASET) == first.version
    # the blocked version is kept, complete, with its results, for whoever looks into it
    stored = read_manifest(storage, DATASET, second.version)
    assert stored.quality["blocked"] is True
    [failed] = [r for r in stored.quality["results"] if not r["passed"]]
    assert failed["unexpected_count"] == 1
    assert failed["samples"][0]["key"] == {"ParticipantIdentifier": "RX-0001", "LogId": "RX-0001-sleep-0-b"}


def test_row_count_change_compares_with_the_previous_version(tmp_path, registry):
    profile = dataclasses.replace(
        load_profile("recover"),
        expectations={"*": {"root": (Expectation(kind="row_count_change", max_decrease=0.5, max_increase=0.5),)}},
    )
    _, first = ingest_and_publish(tmp_path, registry, sleep_logs({}), profile, "a")
    [result] = first.quality["results"]
    assert result["passed"] and result["note"] == "no previous version of this table to compare with"

    # six more sleep logs: twice as many rows as before, beyond +50 %
    more = [{**row, "LogId": row["LogId"] + "-b"} for row in sleep_logs({})]
    _, second = ingest_and_publish(tmp_path, registry, more, profile, "b")
    [result] = second.quality["results"]
    assert result["passed"] is False
    assert result["element_count"] == 12


@pytest.mark.spark
def test_the_spark_engine_output_is_checked_the_same(tmp_path, registry, spark):
    storage, manifest = ingest_and_publish(
        tmp_path, registry, sleep_logs(OUT_OF_RANGE), load_profile("recover"), "a", engine="spark", spark=spark
    )
    result = minutes_asleep_result(manifest)
    assert result["unexpected_count"] == 2
    assert flagged_keys(result) == set(OUT_OF_RANGE)
    assert current_version(storage, DATASET) == manifest.version


@pytest.mark.spark
def test_on_the_spark_engine_a_block_expectation_keeps_the_previous_version_current(
    tmp_path, registry, spark, monkeypatch
):
    def not_pandas(*args, **kwargs):
        raise AssertionError("the Spark engine's versions are checked by Spark")

    monkeypatch.setattr(PandasTables, "read", not_pandas)
    profile = blocking(load_profile("recover"))
    storage, first = ingest_and_publish(tmp_path, registry, sleep_logs({}), profile, "a", "spark", spark)
    assert first.quality["passed"] and current_version(storage, DATASET) == first.version

    later_rows = [{**row, "LogId": row["LogId"] + "-b"} for row in sleep_logs({})]
    later_rows[0]["MinutesAsleep"] = "1441"
    _, second = ingest_and_publish(tmp_path, registry, later_rows, profile, "b", "spark", spark)

    assert second.blocked_by_quality
    assert current_version(storage, DATASET) == first.version
    [failed] = [r for r in read_manifest(storage, DATASET, second.version).quality["results"] if not r["passed"]]
    assert (failed["policy"], failed["unexpected_count"], failed["element_count"]) == ("block", 1, 12)
    assert failed["samples"] == [
        {"value": 1441, "key": {"ParticipantIdentifier": "RX-0001", "LogId": "RX-0001-sleep-0-b"}}
    ]
