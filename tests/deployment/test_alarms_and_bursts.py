"""The rendered alarms stack, the Lambda's burst settings and its code key by
content hash, and the opt-in upload subscription (sceptre renders both groups)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy_fixtures import STACK_GROUPS, render_group, require_sceptre

pytestmark = pytest.mark.deploy

NAMESPACE = "feat-alarms-1"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, dict[str, dict]]:
    require_sceptre()
    out = {}
    for group in STACK_GROUPS:
        paths: dict[str, Path] = render_group(group, tmp_path_factory.mktemp(group), NAMESPACE)
        out[group] = {name: json.loads(path.read_text()) for name, path in paths.items()}
    return out


def of_type(template: dict, rtype: str) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == rtype}


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_alarms_watch_dlq_lambda_errors_and_invalid_volume_and_notify_one_topic(rendered, group):
    template = rendered[group][f"{NAMESPACE}-alarms"]
    alarms = of_type(template, "AWS::CloudWatch::Alarm")
    watched = {(a["Namespace"], a["MetricName"], json.dumps(a["Dimensions"][0]["Value"])) for a in alarms.values()}
    assert watched == {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", json.dumps({"Fn::Sub": "${Namespace}-input-dlq"})),
        ("AWS/Lambda", "Errors", json.dumps({"Fn::Sub": "${Namespace}-sqs-to-glue"})),
        ("AWS/SQS", "NumberOfMessagesSent", json.dumps({"Fn::Sub": "${Namespace}-invalid-records"})),
    }
    (topic,) = of_type(template, "AWS::SNS::Topic")
    assert all(a["AlarmActions"] == [{"Ref": topic}] for a in alarms.values())
    (rule,) = of_type(template, "AWS::Events::Rule").values()
    assert rule["EventPattern"]["source"] == ["aws.glue"]
    assert set(rule["EventPattern"]["detail"]["state"]) == {"FAILED", "TIMEOUT", "ERROR"}
    assert rule["Targets"] == [{"Id": "alarm-topic", "Arn": {"Ref": topic}}]
    subscription = template["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail" and subscription["Properties"]["Protocol"] == "email"


def test_every_alarm_has_a_runbook_entry():
    operations = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    alarms_template = (Path(__file__).resolve().parents[2] / "templates" / "alarms.yaml").read_text()
    anchors = [
        line.split("docs/operations.md#", 1)[1].split()[0].rstrip(").,")
        for line in alarms_template.splitlines()
        if "Runbook: docs/operations.md#" in line
    ]
    assert len(anchors) == 4
    headings = {
        "-".join(line.lstrip("#").strip().lower().replace("`", "").split())
        for line in operations.splitlines()
        if line.startswith("#")
    }
    assert set(anchors) <= headings, set(anchors) - headings


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_lambda_takes_bursts_and_its_code_key_carries_the_hash(rendered, group):
    template = rendered[group][f"{NAMESPACE}-lambda-sqs-to-glue"]
    (function,) = of_type(template, "AWS::Lambda::Function").values()
    assert function["Code"]["S3Key"] == {
        "Fn::Sub": "BridgeDownstream/${ArtifactRef}/lambda/sqs_to_glue-${LambdaCodeSha256}.zip"
    }
    assert "MAX_THROTTLE_REQUEUES" in function["Environment"]["Variables"]
    parameters = template["Parameters"]
    assert parameters["BatchSize"]["Default"] >= 100 and parameters["MaximumBatchingWindowInSeconds"]["Default"] > 0
    (role,) = of_type(template, "AWS::IAM::Role").values()
    statements = {s["Sid"]: s for s in role["Policies"][0]["PolicyDocument"]["Statement"]}
    assert statements["RequeueWhenGlueIsAtCapacity"]["Action"] == ["sqs:SendMessage", "sqs:GetQueueUrl"]
    assert statements["RequeueWhenGlueIsAtCapacity"]["Resource"] == {"Ref": "InputQueueArn"}


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_the_upload_subscription_is_conditional_and_can_filter_a_key_prefix(rendered, group):
    template = rendered[group][f"{NAMESPACE}-queues"]
    subscription = template["Resources"]["InputTopicSubscription"]
    assert subscription["Condition"] == "SubscribesToUploads"
    policy = subscription["Properties"]["FilterPolicy"]["Fn::If"]
    assert policy[0] == "FiltersUploadKeys"
    assert policy[1] == {"Records": {"s3": {"object": {"key": [{"prefix": {"Ref": "UploadsKeyPrefix"}}]}}}}
