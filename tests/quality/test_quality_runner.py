"""Each kind of expectation on a fabricated published version (real Parquet):
what it counts, the keys of the rows it flags, and what it does where the
table or column is absent."""

from __future__ import annotations

import dataclasses

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.expectations import Expectation
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.quality import run_expectations
from published_fixtures import publish

DATASET = "Steps_v1"
ROOT = "dataset_steps_v1"
PARTITION = (("assessmentid", "steps"),)


def rows(*values) -> list[dict]:
    return [
        {"recordid": f"r{n}", "sourcefile": "a.json", "sourceindex": 0, "uploadedon": value[0], "kind": value[1]}
        for n, value in enumerate(values)
    ]


def check(tmp_path, table_rows, *items, previous_rows=None, table=ROOT):
    storage = LocalStorage(tmp_path)
    if previous_rows is not None:
        publish(storage, DATASET, "v1", {ROOT: {PARTITION: previous_rows}})
    manifest = publish(storage, DATASET, "v2", {ROOT: {PARTITION: table_rows}})
    manifest.previous_version = "v1" if previous_rows is not None else None
    profile = dataclasses.replace(load_profile("mtb"), expectations={DATASET: {table: tuple(items)}})
    return run_expectations(storage, manifest, profile)


def test_not_null_and_in_set_flag_their_rows_by_the_natural_key(tmp_path):
    quality = check(
        tmp_path,
        rows(("2024-01-01", "walk"), (None, "walk"), ("2024-01-02", "swim")),
        Expectation(kind="not_null", column="uploadedon"),
        Expectation(kind="in_set", column="kind", values=("walk", "run"), policy="block"),
    )
    not_null, in_set = quality["results"]
    assert (not_null["passed"], not_null["unexpected_count"]) == (False, 1)
    assert not_null["samples"] == [{"value": None, "key": {"recordid": "r1", "sourcefile": "a.json", "sourceindex": 0}}]
    assert (in_set["passed"], in_set["unexpected_count"]) == (False, 1)
    assert in_set["samples"][0]["value"] == "swim" and in_set["samples"][0]["key"]["recordid"] == "r2"
    assert quality["passed"] is False and quality["blocked"] is True


def test_unique_uses_the_natural_key_and_finds_duplicates(tmp_path):
    duplicated = rows(("2024-01-01", "walk"), ("2024-01-01", "walk"))
    duplicated[1]["recordid"] = "r0"
    quality = check(tmp_path, duplicated, Expectation(kind="unique"))
    [unique] = quality["results"]
    assert unique["passed"] is False
    assert unique["unexpected_count"] == 2
    assert quality["blocked"] is False  # warn is the default


def test_row_count_change_within_bounds_passes(tmp_path):
    previous = rows(*[("2024-01-01", "walk")] * 4)
    quality = check(
        tmp_path,
        rows(*[("2024-01-01", "walk")] * 3),
        Expectation(kind="row_count_change", max_decrease=0.25),
        previous_rows=previous,
    )
    [result] = quality["results"]
    assert result["passed"] is True and result["element_count"] == 3


def test_row_count_change_beyond_bounds_fails(tmp_path):
    quality = check(
        tmp_path,
        rows(("2024-01-01", "walk")),
        Expectation(kind="row_count_change", max_decrease=0.5),
        previous_rows=rows(*[("2024-01-01", "walk")] * 4),
    )
    [result] = quality["results"]
    assert result["passed"] is False and result["element_count"] == 1


def test_an_absent_column_is_nothing_to_check_but_fails_column_exists(tmp_path):
    quality = check(
        tmp_path,
        rows(("2024-01-01", "walk")),
        Expectation(kind="between", column="HeartRate", min=25, max=300),
        Expectation(kind="column_exists", column="HeartRate"),
    )
    between, exists = quality["results"]
    assert between["passed"] is True and between["note"] == "no column HeartRate: nothing to check"
    assert exists["passed"] is False


def test_an_expectation_on_a_table_the_version_lacks_fails(tmp_path):
    quality = check(tmp_path, rows(("2024-01-01", "walk")), Expectation(kind="unique"), table="dataset_steps_v1_laps")
    [result] = quality["results"]
    assert result["passed"] is False and result["error"] == "no such table in this version"
