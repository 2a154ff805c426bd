"""Publish is debounced in AWS: no ingest run starts a JSON->Parquet job; the
JSON->Parquet workflow (one run at a time) is started by a rate trigger
where a pipeline publishes after ingest, by its schedule elsewhere."""

from __future__ import annotations

import json

import pytest
import yaml

from deploy_fixtures import ROOT, STACK_GROUPS, render_group, require_sceptre

pytestmark = [pytest.mark.deploy]

NAMESPACE = "feat-debounce-1"


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory) -> list[tuple[dict, dict]]:
    """(config entry, rendered template) of every pipeline of every stack group."""
    require_sceptre()
    found = []
    for group in STACK_GROUPS:
        paths = render_group(group, tmp_path_factory.mktemp(group), NAMESPACE)
        config = yaml.safe_load((ROOT / "config" / group / "config.yaml").read_text())
        for pipeline in config["pipelines"]:
            found.append((pipeline, json.loads(paths[f"{NAMESPACE}-pipeline-{pipeline['id']}"].read_text())))
    return found


def _of_type(template: dict, kind: str) -> dict:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def test_no_ingest_run_starts_a_publish(pipelines):
    for pipeline, template in pipelines:
        publish_jobs = {name for name in _of_type(template, "AWS::Glue::Job") if name.startswith("JsonToParquet")}
        assert publish_jobs, pipeline["id"]
        for name, trigger in _of_type(template, "AWS::Glue::Trigger").items():
            started = {action["JobName"]["Ref"] for action in trigger["Properties"]["Actions"]}
            if trigger["Properties"]["WorkflowName"] == {"Ref": "S3ToJsonWorkflow"}:
                assert not started & publish_jobs, (pipeline["id"], name)


def test_publish_runs_one_at_a_time_on_a_rate_or_its_schedule(pipelines):
    for pipeline, template in pipelines:
        # the stack group's schedule switch starts it, whichever the schedule
        schedule_trigger = template["Resources"]["JsonToParquetScheduleTrigger"]["Properties"]
        assert schedule_trigger["StartOnCreation"] == {"Fn::If": ["ScheduleOn", True, False]}
        workflow = template["Resources"]["JsonToParquetWorkflow"]["Properties"]
        assert workflow["MaxConcurrentRuns"] == 1
        for job in _of_type(template, "AWS::Glue::Job").values():
            assert job["Properties"]["ExecutionProperty"]["MaxConcurrentRuns"] >= 1
        trigger = template["Resources"]["JsonToParquetScheduleTrigger"]["Properties"]
        assert trigger["Type"] == "SCHEDULED"
        assert trigger["WorkflowName"] == {"Ref": "JsonToParquetWorkflow"}
        if pipeline.get("publish_after_ingest"):
            assert trigger["Schedule"] == pipeline.get("publish_rate", "cron(0/15 * * * ? *)")
        else:
            assert trigger["Schedule"] == pipeline["schedule"]
