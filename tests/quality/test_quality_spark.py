"""The expectations checked by Spark (tables larger than the driver's memory):
on the same published version, the same results as on pandas, a carried
partition included, and no network asked for. (The Spark publish engine's
gate: tests/quality/test_quality_gate.py.)"""

from __future__ import annotations

import dataclasses
import socket

import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.expectations import Expectation
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.manifest import read_manifest
from bridge_downstream.quality import run_expectations
from bridge_downstream.quality.runner import PandasTables, SparkTables
from published_fixtures import publish

pytestmark = pytest.mark.spark

DATASET = "Steps_v1"
ROOT = "dataset_steps_v1"
EARLIER, LATER = (("assessmentid", "steps"), ("year", "2023")), (("assessmentid", "steps"), ("year", "2024"))


def rows(prefix: str, heart_rates: list[str | None], kinds: list[str]) -> list[dict]:
    return [
        {"recordid": f"{prefix}{n}", "sourcefile": "a.json", "sourceindex": 0, "heartrate": rate, "kind": kind}
        for n, (rate, kind) in enumerate(zip(heart_rates, kinds, strict=True))
    ]


EXPECTATIONS = (
    Expectation(kind="between", column="heartrate", min=25, max=300),
    Expectation(kind="not_null", column="heartrate"),
    Expectation(kind="in_set", column="kind", values=("walk", "run")),
    Expectation(kind="between", column="year", min=2024, max=2024),
    Expectation(kind="unique"),
    Expectation(kind="column_exists", column="kind"),
    Expectation(kind="row_count_change", max_decrease=0.1, max_increase=0.1),
)


@pytest.fixture
def carried_version(tmp_path):
    """v2 of Steps_v1: its 2024 partition written anew, its 2023 partition carried
    by reference from v1's folder (as an incremental publish leaves it). Seeded:
    one heart rate of 900, one that is no number, one missing, one kind not allowed."""
    storage = LocalStorage(tmp_path)
    publish(storage, DATASET, "v1", {ROOT: {EARLIER: rows("a", ["60", "900", "70"], ["walk"] * 3)}})
    later = rows("b", ["80", "fast", None, "90"], ["walk", "run", "swim", "walk"])
    manifest = publish(storage, DATASET, "v2", {ROOT: {LATER: later}})
    earlier = read_manifest(storage, DATASET, "v1").tables[ROOT]
    table = manifest.tables[ROOT]
    table.files = [*earlier.files, *table.files]
    table.rows += earlier.rows
    manifest.previous_version = "v1"
    profile = dataclasses.replace(load_profile("mtb"), expectations={DATASET: {"root": EXPECTATIONS}})
    return storage, manifest, profile


def without_time(quality: dict) -> dict:
    return {k: v for k, v in quality.items() if k != "checked_at"}


def test_spark_and_pandas_give_identical_results_on_the_same_version(carried_version, spark):
    storage, manifest, profile = carried_version

    on_pandas = run_expectations(storage, manifest, profile, source=PandasTables())
    on_spark = run_expectations(storage, manifest, profile, source=SparkTables(spark))

    assert without_time(on_spark) == without_time(on_pandas)
    between, not_null, in_set, year, unique, exists, row_count = on_spark["results"]
    assert all(r["error"] is None for r in on_spark["results"])
    # the carried partition is read: seven rows, the 900 among them, flagged with its key
    assert (between["passed"], between["element_count"], between["unexpected_count"]) == (False, 7, 1)
    assert between["samples"] == [{"value": 900, "key": {"recordid": "a1", "sourcefile": "a.json", "sourceindex": 0}}]
    # text that is no number is no value for the range, and so a null for not_null beside it
    assert (not_null["passed"], not_null["unexpected_count"]) == (False, 2)
    assert sorted(s["key"]["recordid"] for s in not_null["samples"]) == ["b1", "b2"]
    assert in_set["samples"] == [{"value": "swim", "key": {"recordid": "b2", "sourcefile": "a.json", "sourceindex": 0}}]
    # the partition column has the layout's type on both (an int year), the carried partition's too
    assert (year["unexpected_count"], {s["value"] for s in year["samples"]}) == (3, {2023})
    assert (unique["passed"], exists["passed"]) == (True, True)
    # seven rows against v1's three: beyond +10 %, counted by Spark
    assert (row_count["passed"], row_count["element_count"]) == (False, 7)
    assert on_spark["passed"] is False and on_spark["blocked"] is False


def test_an_empty_table_is_checked_on_spark_as_on_pandas(tmp_path, spark):
    storage = LocalStorage(tmp_path)
    manifest = publish(storage, DATASET, "v1", {ROOT: {LATER: rows("b", ["80"], ["walk"])}})
    manifest.tables[ROOT].files = []
    manifest.tables[ROOT].rows = 0
    profile = dataclasses.replace(load_profile("mtb"), expectations={DATASET: {"root": EXPECTATIONS[:2]}})

    on_pandas = run_expectations(storage, manifest, profile, source=PandasTables())
    on_spark = run_expectations(storage, manifest, profile, source=SparkTables(spark))

    assert without_time(on_spark) == without_time(on_pandas)
    assert [r["element_count"] for r in on_spark["results"]] == [0, 0]


def test_gx_on_spark_needs_no_network(carried_version, spark, monkeypatch):
    """GX would swallow a refused connection (its usage statistics): every attempt
    beyond this machine is recorded, and none may be made. Spark's own local socket stays open."""
    storage, manifest, profile = carried_version
    attempts: list[object] = []
    local_connect = socket.socket.connect

    def this_machine_only(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError("no network in this test")
        return local_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", this_machine_only)
    quality = run_expectations(storage, manifest, profile, source=SparkTables(spark))
    assert attempts == []
    assert [r["error"] for r in quality["results"]] == [None] * len(EXPECTATIONS)
