"""Every dataset a pipeline's profile can produce is published in AWS: the
JSON->Parquet jobs rendered from config/<group>/config.yaml, given the
datasets an ingest wrote, choose each of them exactly once."""

from __future__ import annotations

import json
import zipfile

import pytest
import yaml

from bridge_downstream.config.profiles import load_profile
from bridge_downstream.ingest.ndjson_export import export_dataset_id
from bridge_downstream_adapters.glue_args import resolve_options
from deploy_fixtures import ROOT, STACK_GROUPS, render_group, require_sceptre
from project_paths import shared_path
from support import load_job

pytestmark = [pytest.mark.deploy, pytest.mark.shared_data]

NAMESPACE = "feat-groups-1"


def group_config(group: str) -> dict:
    return yaml.safe_load((ROOT / "config" / group / "config.yaml").read_text())


class _IngestedDatasets:
    """The Glue client a workflow-started job asks for its run's ingested datasets."""

    def __init__(self, datasets: list[str]):
        self.datasets = datasets

    def get_workflow_run_properties(self, Name, RunId):
        return {"RunProperties": {"ingested_datasets": ",".join(self.datasets)}}


def _recover_datasets() -> list[str]:
    """recover's data types, each with its _Deleted companion, and every dataset the real export holds."""
    profile = load_profile("recover")
    data_types = list(profile.dedup.keys_by_data_type)
    archive = shared_path("bridge-archives", "recover-2023-01-13T21--08--51Z_TESTDATA.zip")
    with zipfile.ZipFile(archive) as export:
        in_export = [d for d in (export_dataset_id(name) for name in export.namelist()) if d]
    suffix = profile.dedup.deleted_suffix
    return sorted({*data_types, *(d + suffix for d in data_types), *in_export})


def _mtb_datasets() -> list[str]:
    schema_mapping = json.loads(shared_path("bridge-downstream-config", "schema_mapping.json").read_text())
    legacy = json.loads(shared_path("bridge-downstream-config", "dataset_mapping.json").read_text())

    def leaves(value):
        if isinstance(value, dict):
            for sub in value.values():
                yield from leaves(sub)
        elif isinstance(value, str):
            yield value

    return sorted({*schema_mapping.values(), *leaves(legacy)})


POSSIBLE_DATASETS = {"recover": _recover_datasets, "mtb": _mtb_datasets}


@pytest.fixture(scope="module")
def rendered_pipelines(tmp_path_factory) -> dict[str, dict]:
    require_sceptre()
    templates = {}
    for group in STACK_GROUPS:
        paths = render_group(group, tmp_path_factory.mktemp(group), NAMESPACE)
        for pipeline in group_config(group)["pipelines"]:
            path = paths[f"{NAMESPACE}-pipeline-{pipeline['id']}"]
            templates[f"{group}/{pipeline['id']}"] = json.loads(path.read_text())
    return templates


def _chosen_by_each_job(template: dict, ingested: list[str]) -> dict[str, list[str]]:
    job_script = load_job("json_to_parquet")
    chosen = {}
    for name, job in template["Resources"].items():
        if job["Type"] != "AWS::Glue::Job" or not name.startswith("JsonToParquet"):
            continue
        arguments = [
            part
            for key, value in job["Properties"]["DefaultArguments"].items()
            if key in ("--datasets", "--excluded-datasets")
            for part in (key, value)
        ]
        args = resolve_options(
            arguments, [], {"datasets": "", "excluded-datasets": "", "WORKFLOW_NAME": "wf", "WORKFLOW_RUN_ID": "r1"}
        )
        chosen[name] = job_script.chosen_datasets(args, _IngestedDatasets(ingested), work=None)
    return chosen


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_every_dataset_a_profile_can_produce_is_published_by_exactly_one_job(rendered_pipelines, group):
    for pipeline in group_config(group)["pipelines"]:
        possible = POSSIBLE_DATASETS[pipeline["profile"]]()
        assert len(possible) > 10
        chosen = _chosen_by_each_job(rendered_pipelines[f"{group}/{pipeline['id']}"], possible)
        assert len(chosen) == len(pipeline["dataset_groups"])
        published = [dataset for datasets in chosen.values() for dataset in datasets]
        assert sorted(published) == possible, pipeline["id"]  # each once, none missing, none invented


def test_recover_garmin_healthkit_and_googlefit_go_to_the_catch_all_job(rendered_pipelines):
    chosen = _chosen_by_each_job(
        rendered_pipelines["develop/recover-pilot"],
        ["FitbitIntradayCombined", "GarminDailySummary", "HealthKitV2Samples_Steps", "GoogleFitSamples"],
    )
    assert chosen["JsonToParquetFitbitIntradayJob"] == ["FitbitIntradayCombined"]
    assert chosen["JsonToParquetOthersJob"] == ["GarminDailySummary", "HealthKitV2Samples_Steps", "GoogleFitSamples"]
