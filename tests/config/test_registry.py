import json

import pytest

from bridge_downstream.config.registry import RegistryError, SchemaRegistry, build_registry
from bridge_downstream.ingest.validation import validate_document
from support import SAMPLE_REGISTRY_SOURCE, TASKDATA_URL, build_real_registry, build_sample_registry

BASE = "https://bridge-downstream.invalid/schemas"


def test_sample_registry_round_trips_and_resolves_refs_offline(tmp_path):
    registry = build_sample_registry(tmp_path / "registry")
    assert registry.dataset_for_schema(f"{BASE}/v2/TaskData.json") == "TaskData_v2"
    # v2/TaskData refers to v1/Common.json by a relative and an absolute $ref.
    good = {
        "taskIdentifier": "t",
        "steps": [{"identifier": "a", "responseTime": 1.0, "interactions": [{"controlEvent": "tap"}]}],
    }
    assert validate_document(registry, f"{BASE}/v2/TaskData.json", good) == []
    bad = {"taskIdentifier": "t", "steps": [{"identifier": "a", "responseTime": -1, "interactions": [{}]}]}
    errors = validate_document(registry, f"{BASE}/v2/TaskData.json", bad)
    assert "-1 is less than the minimum of 0 (at /steps/0/responseTime)" in errors
    assert "'controlEvent' is a required property (at /steps/0/interactions/0)" in errors


def test_registry_version_is_a_content_digest(tmp_path):
    first = build_sample_registry(tmp_path / "a").version
    second = build_sample_registry(tmp_path / "b").version
    assert first == second and first.startswith("sha256-")


def test_a_ref_outside_the_registry_is_an_error_not_a_download(tmp_path):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "Remote.json").write_text(
        json.dumps({"$id": "https://x.invalid/Remote.json", "$ref": "https://elsewhere.invalid/Other.json"})
    )
    for name, content in (("map.json", {"anyOf": [], "assessments": [], "apps": []}), ("sm.json", {}), ("dm.json", {})):
        (tmp_path / name).write_text(json.dumps(content))
    build_registry(
        archive_map=tmp_path / "map.json",
        schema_dirs=[schemas],
        schema_mapping=tmp_path / "sm.json",
        dataset_mapping=tmp_path / "dm.json",
        out=tmp_path / "reg",
    )
    registry = SchemaRegistry.load(tmp_path / "reg")
    errors = validate_document(registry, "https://x.invalid/Remote.json", {"a": 1})
    assert errors == [
        "schema https://x.invalid/Remote.json refers to 'https://elsewhere.invalid/Other.json', which is not in the registry"
    ]


def test_conflicting_schemas_for_one_id_are_refused(tmp_path):
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "A.json").write_text(json.dumps({"$id": "same", "type": "object"}))
    (schemas / "B.json").write_text(json.dumps({"$id": "same", "type": "array"}))
    with pytest.raises(RegistryError, match="conflicting schemas claim \\$id 'same'"):
        build_registry(
            archive_map=SAMPLE_REGISTRY_SOURCE / "archive-map.json",
            schema_dirs=[schemas],
            schema_mapping=SAMPLE_REGISTRY_SOURCE / "schema-mapping.json",
            dataset_mapping=SAMPLE_REGISTRY_SOURCE / "dataset-mapping.json",
            out=tmp_path / "reg",
        )


def test_loading_an_incomplete_registry_says_what_is_missing(tmp_path):
    build_sample_registry(tmp_path / "reg")
    (tmp_path / "reg" / "archive-map.json").unlink()
    with pytest.raises(RegistryError, match="has no archive-map.json"):
        SchemaRegistry.load(tmp_path / "reg")


@pytest.mark.shared_data
def test_real_registry_indexes_schemas_by_id_and_published_url(tmp_path):
    registry = build_real_registry(tmp_path / "real")
    # sharedSchema is published under a GitHub URL but its $id is "sharedSchema".
    assert registry.schema_id_for(TASKDATA_URL) == "sharedSchema"
    assert registry.dataset_for_schema(TASKDATA_URL) == "sharedSchema_v1"
    assert (
        registry.dataset_for_schema(
            "https://sage-bionetworks.github.io/mobile-client-json/schemas/v2/MotionRecord.json"
        )
        == "MotionRecord_v1"
    )
    index = json.loads((tmp_path / "real" / "registry.json").read_text())
    # Every schema the archive map names is in the registry except the ones
    # mobile-client-json does not publish itself (none, with the aliases).
    assert index["unresolved_archive_map_urls"] == []
