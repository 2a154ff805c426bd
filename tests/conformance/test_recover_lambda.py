"""Mirrors of Sage-Bionetworks/recover tests/test_s3_to_glue_lambda.py (commit
6a9e4ae4), TestS3ToGlueLambda, asked of this project's sqs_to_glue Lambda
(src/lambda/sqs_to_glue/app.py): its S3 event, test event and object-info
fixtures, verbatim where they are data."""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest

from project_paths import PROJECT_ROOT


def load_lambda():
    spec = importlib.util.spec_from_file_location(
        "sqs_to_glue_conformance", PROJECT_ROOT / "src" / "lambda" / "sqs_to_glue" / "app.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


app = load_lambda()

BUCKET = "recover-dev-input-data"
KEY = "main/2023-01-12T22--02--17Z_77fefff8-b0e2-4c1b-b0c5-405554c92368"
# recover's input keys are <namespace>/<export>: one folder, which names the
# pipeline here as both app and study.
KEY_PATTERN = re.compile(r"^(?P<app_id>(?P<study_id>[^/]+))/")
SETTINGS = app.Settings(workflows={"main/main": "test_workflow"}, key_pattern=KEY_PATTERN)

S3_TEST_EVENT = {
    "Service": "Amazon S3",
    "Event": "s3:TestEvent",
    "Time": "2020-11-30T00:00:00.000Z",
    "Bucket": "the_bucket_name",
    "RequestId": "some_id",
    "HostId": "another_id",
}


def s3_event(bucket: str | None = BUCKET, key: str | None = KEY) -> dict:
    """The original's `s3_event` fixture (its identity fields left out)."""
    return {
        "eventVersion": "2.0",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "1970-01-01T00:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "testConfigRule",
            "bucket": {"name": bucket, "arn": "arn:aws:s3:::bucket_arn"},
            "object": {"key": key, "size": 1024, "eTag": "0123456789abcdef0123456789abcdef"},
        },
    }


def sqs_message(message: dict) -> dict:
    """The original's `sqs_message` around its `sns_message`."""
    sns = {"Type": "Notification", "MessageId": "string", "TopicArn": "string", "Message": json.dumps(message)}
    return {"Records": [{"messageId": "string", "receiptHandle": "string", "body": json.dumps(sns)}]}


class RecordingGlue:
    def __init__(self):
        self.runs: list[tuple[str, list[dict]]] = []

    # keyword arguments named as boto3's Glue client names them
    def start_workflow_run(self, Name, RunProperties):
        self.runs.append((Name, json.loads(RunProperties["messages"])))
        return {"RunId": f"run-{len(self.runs)}"}


def test_that_lambda_handler_does_not_call_submit_s3_to_json_workflow_if_no_s3_records():
    glue = RecordingGlue()
    result = app.lambda_handler(sqs_message({"Records": []}), None, glue_client=glue, settings=SETTINGS)
    assert glue.runs == []
    assert result == {"batchItemFailures": []}


def test_that_lambda_handler_calls_submit_s3_to_json_workflow_if_queue_has_message():
    glue = RecordingGlue()
    app.lambda_handler(sqs_message({"Records": [s3_event()]}), None, glue_client=glue, settings=SETTINGS)
    # the original's object_info, and the raw folder this project's messages also name
    assert glue.runs == [("test_workflow", [{"source_bucket": BUCKET, "source_key": KEY, "raw_folder_id": None}])]


def test_get_object_info_unicode_characters_in_key():
    event = s3_event(key="main/2023-09-26T00%3A06%3A39Z_d873eafb-554f-4f8a-9e61-cdbcb7de07eb")
    (message,) = app.parse_s3_event({"Records": [event]}, KEY_PATTERN)
    assert message.source_key == "main/2023-09-26T00:06:39Z_d873eafb-554f-4f8a-9e61-cdbcb7de07eb"


@pytest.mark.parametrize(
    ("bucket", "key", "expected"),
    [
        (BUCKET, KEY, [{"source_bucket": BUCKET, "source_key": KEY, "raw_folder_id": None}]),
        (BUCKET, "main/v1/owner.txt", []),
        (BUCKET, "main/adults_v2/", []),
        (BUCKET, None, []),
        (None, KEY, []),
    ],
    ids=["correct_msg_format", "owner_txt", "directory", "missing_source_key", "missing_source_bucket"],
)
def test_that_filter_object_info_returns_expected_result(bucket, key, expected):
    messages = app.parse_s3_event({"Records": [s3_event(bucket, key)]}, KEY_PATTERN)
    assert [m.as_property() for m in messages] == expected


def test_that_is_s3_test_event_returns_true_when_s3_test_event_is_present():
    glue = RecordingGlue()
    result = app.lambda_handler(sqs_message(S3_TEST_EVENT), None, glue_client=glue, settings=SETTINGS)
    assert (glue.runs, result) == ([], {"batchItemFailures": []})


def test_that_is_s3_test_event_returns_false_when_s3_test_event_is_not_present():
    body = json.dumps({"Type": "Notification", "Message": json.dumps({"Records": [s3_event()]})})
    assert len(app.parse_body(body, KEY_PATTERN)) == 1
