"""The recover profile's dedup keys and column types are recover's own
(Sage-Bionetworks/recover: INDEX_FIELD_MAP and its Glue table definitions)."""

import json

import pytest
import yaml

from bridge_downstream.config.profiles import load_profile
from project_paths import shared_path

pytestmark = pytest.mark.shared_data

RECOVER = load_profile("recover")

# recover's Glue column types -> the kinds a profile declares (Glue's 32-bit
# int fits bigint); struct and array columns cannot be declared.
GLUE_KINDS = {"string": "string", "int": "bigint", "bigint": "bigint", "double": "double", "boolean": "boolean"}
# recover's own enrichment columns; the profile's enrichment columns replace them
RECOVER_ENRICHMENT = {"export_start_date", "export_end_date"}


def _index_field_map() -> dict[str, list[str]]:
    return json.loads(shared_path("recover-config", "index_field_map.json").read_text())


def _table_definitions() -> dict:
    return yaml.safe_load(shared_path("recover-config", "table_columns.yaml").read_text())["tables"]


def test_every_recover_data_type_has_recover_key_in_the_data_spelling():
    keys = RECOVER.dedup.keys_by_data_type
    by_lower = {data_type.lower(): data_type for data_type in keys}
    index_field_map = _index_field_map()
    assert len(index_field_map) == 34
    for lower_name, key in index_field_map.items():
        assert lower_name in by_lower, f"{lower_name}: no dedup key in the recover profile"
        assert list(keys[by_lower[lower_name]]) == key, lower_name
    assert set(by_lower) == set(index_field_map)  # and no key recover does not have


def test_sub_types_and_deleted_companions_take_their_data_types_key():
    assert RECOVER.dedup.key_for("HealthKitV2Samples_HeartRate") == ("ParticipantIdentifier", "HealthKitSampleKey")
    assert RECOVER.dedup.key_for("GarminSleepSummary_Deleted") == (
        "ParticipantIdentifier",
        "StartTimeInSeconds",
        "DurationInSeconds",
        "Validation",
    )


def test_declared_types_are_recover_table_types_for_every_root_scalar():
    definitions = _table_definitions()
    checked = 0
    for table, definition in definitions.items():
        if table.endswith("_Deleted"):
            continue
        declared = {name.lower(): kind for name, kind in RECOVER.declared_column_types(table).items()}
        for column in definition["columns"]:
            name, glue_type = column["Name"], column["Type"]
            if name in RECOVER_ENRICHMENT:
                continue
            if glue_type in GLUE_KINDS:
                assert declared.get(name.lower()) == GLUE_KINDS[glue_type], f"{table}.{name}"
                checked += 1
            else:  # nested: not declarable
                assert glue_type.startswith(("struct<", "array<")) and name.lower() not in declared
    assert checked > 400
    assert RECOVER.declared_column_types("GarminDailySummary")["Steps"] == "bigint"
    assert RECOVER.declared_column_types("FitbitIntradayCombined")["Mets"] == "double"
