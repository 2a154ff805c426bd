import json

from bridge_downstream.ingest.resolution import resolve_file
from support import build_sample_registry

BASE = "https://bridge-downstream.invalid/schemas"


def resolve(registry, file_name, assessment="number-match", revision=1, app="sample-app", self_refs=None):
    return resolve_file(
        registry,
        file_name=file_name,
        app_id=app,
        assessment_id=assessment,
        revision=revision,
        self_references=self_refs or {},
    )


def test_assessment_entry_with_the_closest_revision_not_above_wins(registry):
    assert resolve(registry, "taskData.json", revision=1).dataset_id == "TaskData_v1"
    assert resolve(registry, "taskData.json", revision=2).dataset_id == "TaskData_v1"
    three = resolve(registry, "taskData.json", revision=7)
    assert (three.dataset_id, three.source) == ("TaskData_v2", "assessment")


def test_self_reference_in_metadata_json_comes_first(registry):
    result = resolve(registry, "taskData.json", revision=1, self_refs={"taskData.json": f"{BASE}/v2/TaskData.json"})
    assert (result.dataset_id, result.source) == ("TaskData_v2", "self-reference")


def test_app_default_then_app_anyof_then_top_level_anyof(registry):
    assert resolve(registry, "taskData.json", assessment="flanker").source == "app-default"
    assert resolve(registry, "motion.json").source == "app-anyOf"
    assert (resolve(registry, "metadata.json").source, resolve(registry, "metadata.json").dataset_id) == (
        "anyOf",
        "ArchiveMetadata_v1",
    )


def test_the_app_comes_from_the_record(registry):
    other_app = resolve(registry, "motion.json", app="another-app")
    assert other_app.skipped
    assert "app another-app" in other_app.reason


def test_file_aliases_resolve_under_the_aliased_name(registry):
    assert resolve(registry, "motion_data.json").dataset_id == "MotionRecord_v1"


def test_legacy_mapping_when_no_schema(registry):
    legacy = resolve(registry, "answers.json", assessment="legacy-survey", revision=1)
    assert (legacy.dataset_id, legacy.source) == ("SurveyAnswers_v1", "legacy")


def test_unmapped_file_is_skipped_with_a_reason(registry):
    info = resolve(registry, "info.json")
    assert info.skipped
    assert info.reason == (
        "no schema for 'info.json' in the archive map (assessment number-match revision 1, app sample-app) and no legacy dataset mapping"
    )


def test_answers_are_kept_per_registry_and_bounded(registry, tmp_path, monkeypatch):
    # Answers are remembered (a batch asks the same questions of every
    # archive), but per registry: another registry version answers for itself.
    from bridge_downstream.ingest import resolution
    from support import SAMPLE_REGISTRY_SOURCE

    assert resolve(registry, "taskData.json", revision=1).dataset_id == "TaskData_v1"
    self_referenced = resolve(
        registry, "taskData.json", revision=1, self_refs={"taskData.json": f"{BASE}/v2/TaskData.json"}
    )
    assert self_referenced.dataset_id == "TaskData_v2"  # not the answer kept for the same name without it
    mapping = json.loads((SAMPLE_REGISTRY_SOURCE / "schema-mapping.json").read_text())
    mapping = {url: f"{dataset}_renamed" for url, dataset in mapping.items()}
    (tmp_path / "schema-mapping.json").write_text(json.dumps(mapping))
    renamed = build_sample_registry(tmp_path / "renamed", schema_mapping=tmp_path / "schema-mapping.json")
    assert resolve(renamed, "taskData.json", revision=1).dataset_id == "TaskData_v1_renamed"
    assert resolve(registry, "taskData.json", revision=1).dataset_id == "TaskData_v1"
    # Member names come from uploads: what is kept stays bounded.
    monkeypatch.setattr(resolution, "RESOLUTIONS_KEPT", 10)
    for number in range(25):
        assert resolve(registry, f"unknown-{number}.json").skipped
    assert len(resolution._RESOLUTIONS[registry]) <= 10
    assert resolve(registry, "taskData.json", revision=1).dataset_id == "TaskData_v1"
