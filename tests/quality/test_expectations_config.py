"""Expectations as configuration: recover's own ship in the recover profile,
one for one; MTB's small set; a bad expectation stops the profile loading; a
study's file adds to the profile's."""

from __future__ import annotations

import json

import pytest

from bridge_downstream.config.expectations import (
    Expectation,
    ExpectationError,
    load_expectations_file,
    merge_expectations,
)
from bridge_downstream.config.profiles import Profile, ProfileError, load_profile
from bridge_downstream.quality import expectations_for
from project_paths import shared_path


@pytest.mark.shared_data
def test_the_recover_profile_ships_every_recover_expectation():
    suites = json.loads(shared_path("recover-config", "data_values_expectations.json").read_text())
    profile = load_profile("recover")
    by_type = {dataset.lower(): dataset for dataset in profile.expectations}
    shipped = 0
    for data_type, suite in suites.items():
        root = profile.expectations[by_type[data_type]]["root"]
        for item in suite["expectations"]:
            kwargs = item["kwargs"]
            if item["expectation_type"] == "expect_column_values_to_be_between":
                wanted = Expectation(
                    kind="between", column=kwargs["column"], min=kwargs["min_value"], max=kwargs["max_value"]
                )
            else:
                assert item["expectation_type"] == "expect_column_to_exist"
                wanted = Expectation(kind="column_exists", column=kwargs["column"])
            assert wanted in root, f"{data_type}: {item}"
            shipped += 1
    assert shipped == 31
    # and nothing of recover's is left out or invented per data type
    assert sum(len(tables["root"]) for name, tables in profile.expectations.items() if name != "*") == shipped


def test_every_dataset_gets_the_profiles_general_expectations_then_its_own():
    tables = expectations_for(load_profile("recover").expectations, "FitbitSleepLogs")
    kinds = [item.kind for item in tables["root"]]
    assert kinds[:2] == ["unique", "row_count_change"]
    assert kinds[2:] == ["between"] * 12


def test_mtb_expects_unique_keys_uploadedon_and_row_counts():
    root = expectations_for(load_profile("mtb").expectations, "MotionRecord_v1")["root"]
    assert Expectation(kind="unique") in root
    assert Expectation(kind="not_null", column="uploadedon") in root
    assert any(item.kind == "row_count_change" for item in root)
    assert all(item.policy == "warn" for item in root)


@pytest.mark.parametrize(
    "item",
    [
        {"kind": "below", "column": "x"},
        {"kind": "between", "column": "x", "min": 1, "policy": "stop"},
        {"kind": "between", "min": 1},
        {"kind": "between", "column": "x"},
        {"kind": "between", "column": "x", "min": "1"},
        {"kind": "in_set", "column": "x", "values": "ab"},
        {"kind": "unique", "columns": "recordid"},
        {"kind": "not_null", "column": "x", "max": 3},
    ],
)
def test_a_profile_with_a_malformed_expectation_does_not_load(item):
    raw = {
        "name": "p",
        "kind": "bridge-archive",
        "dedup": {"key": ["recordid"]},
        "expectations": {"*": {"root": [item]}},
    }
    with pytest.raises(ProfileError, match="expectations"):
        Profile.from_mapping(raw)


def test_a_studys_file_adds_to_the_profiles_expectations(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(
        "expectations:\n  FitbitSleepLogs:\n    root:\n"
        "      - {kind: in_set, column: Type, values: [stages, classic], policy: block}\n"
    )
    merged = merge_expectations(load_profile("recover").expectations, load_expectations_file(study))
    root = merged["FitbitSleepLogs"]["root"]
    assert len(root) == 13
    assert root[-1] == Expectation(kind="in_set", column="Type", values=("stages", "classic"), policy="block")


def test_a_file_without_an_expectations_mapping_is_refused(tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text("FitbitSleepLogs: {}\n")
    with pytest.raises(ExpectationError, match="expectations"):
        load_expectations_file(study)
