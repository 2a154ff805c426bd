"""Which root-row fields a dataset's ids are built from, and which ones its
child tables carry (``Profile.identity_columns``, ``Profile.carry_columns``)."""

import json

import pytest

from bridge_downstream.config.profiles import Profile, ProfileError, load_profile
from project_paths import shared_path

RECOVER = load_profile("recover")
MTB = load_profile("mtb")


@pytest.mark.parametrize(
    ("dataset_id", "identity", "carried"),
    [
        (
            "FitbitSleepLogs",
            ("ParticipantIdentifier", "LogId"),
            ("ParticipantIdentifier", "LogId", "cohort"),
        ),
        # one dataset of every subtype, and a deleted-rows dataset, take their data type's key
        (
            "HealthKitV2Samples",
            ("ParticipantIdentifier", "HealthKitSampleKey"),
            ("ParticipantIdentifier", "HealthKitSampleKey", "cohort"),
        ),
        (
            "FitbitSleepLogs_Deleted",
            ("ParticipantIdentifier", "LogId"),
            ("ParticipantIdentifier", "LogId", "cohort"),
        ),
        (
            "FitbitIntradayCombined",
            ("ParticipantIdentifier", "Type", "DateTime"),
            ("ParticipantIdentifier", "Type", "DateTime", "cohort"),
        ),
        (
            "FitbitProfiles",
            ("ParticipantIdentifier", "ModifiedDate"),
            ("ParticipantIdentifier", "ModifiedDate", "cohort"),
        ),
        # no key: rows are not deduplicated, their ids say where they were read
        ("Unlisted", ("cohort", "sourcefile", "sourceindex"), ("ParticipantIdentifier", "cohort")),
    ],
)
def test_recover_ids_come_from_the_data_types_key(dataset_id, identity, carried):
    assert RECOVER.identity_columns(dataset_id) == identity
    assert RECOVER.carry_columns(dataset_id) == carried


@pytest.mark.parametrize("dataset_id", ["sharedSchema_v1", "MotionRecord_v1", "ArchiveMetadata_v1"])
def test_mtb_ids_come_from_the_record_id_and_the_member_and_element(dataset_id):
    assert MTB.identity_columns(dataset_id) == ("recordid", "sourcefile", "sourceindex")
    assert MTB.carry_columns(dataset_id) == ("recordid", "assessmentid", "year", "month", "day")


@pytest.mark.shared_data
def test_recover_child_tables_carry_the_original_pipelines_index_fields():
    """Sage's recover pipeline keyed every data type by its INDEX_FIELD_MAP
    fields: our child tables carry each of them, and the partition."""
    original = json.loads(shared_path("recover-config", "index_field_map.json").read_text())
    keyed = RECOVER.dedup.keys_by_data_type
    assert len(keyed) == len(original) == 34
    for data_type in keyed:
        carried = RECOVER.carry_columns(data_type)
        assert set(original[data_type.lower()]) <= set(carried), data_type
        assert carried[-1] == "cohort"


def test_a_profile_without_identity_for_unkeyed_datasets_is_refused():
    raw = {"name": "probe", "kind": "ndjson-export", "dedup": {"keys": {"A": ["k"]}}}
    with pytest.raises(ProfileError, match="identity_fields is needed"):
        Profile.from_mapping(raw)
    keyed = Profile.from_mapping({"name": "probe", "kind": "bridge-archive", "dedup": {"key": ["k"]}})
    assert keyed.identity_columns("Any_v1") == ("k",)
