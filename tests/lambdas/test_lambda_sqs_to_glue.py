"""sqs_to_glue Lambda: both event shapes, test events, encoded keys, skipped
keys, grouping, batching within run-property limits, and partial batch
failures -- against moto's Glue (in-process), handler called directly."""

from __future__ import annotations

import importlib.util
import json
import sys

import boto3
import pytest
from moto import mock_aws

from project_paths import PROJECT_ROOT

ROOT = PROJECT_ROOT
LAMBDA_DIR = ROOT / "src" / "lambda" / "sqs_to_glue"


def load_lambda():
    spec = importlib.util.spec_from_file_location("sqs_to_glue_app", LAMBDA_DIR / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


app = load_lambda()

WORKFLOWS = {
    "mobile-toolbox/example": "ns-mtb-example-s3-to-json",
    "recover/pilot": "ns-recover-pilot-s3-to-json",
}


def s3_record(key: str, bucket: str = "input-bucket") -> dict:
    return {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}


def sns(message: dict | str) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "x",
            "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": message if isinstance(message, str) else json.dumps(message),
        }
    )


def sqs_event(*bodies: str) -> dict:
    return {
        "Records": [
            {"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": body, "eventSource": "aws:sqs"}
            for i, body in enumerate(bodies)
        ]
    }


def bridge_notification(app_id="mobile-toolbox", studies=("example",), key="mobile-toolbox/rec.zip"):
    return {
        "appId": app_id,
        "recordId": "rec",
        "record": {"s3Bucket": "raw", "s3Key": key, "rawFolderId": "syn1"},
        "studyRecords": {
            s: {"s3Bucket": "raw", "s3Key": f"{app_id}/{s}/rec.zip", "rawFolderId": f"syn-{s}"} for s in studies
        },
    }


@pytest.fixture
def glue():
    with mock_aws():
        client = boto3.client("glue", region_name="us-east-1")
        for name in WORKFLOWS.values():
            client.create_workflow(Name=name)
        yield client


def settings(**kw):
    return app.Settings(workflows=dict(WORKFLOWS), **kw)


def runs(glue, workflow):
    return [json.loads(r["WorkflowRunProperties"]["messages"]) for r in glue.get_workflow_runs(Name=workflow)["Runs"]]


def test_s3_event_starts_one_run_with_decoded_key(glue):
    body = sns({"Records": [s3_record("mobile-toolbox/example/2022/rec+one%2Bplus%20x.zip")]})
    result = app.lambda_handler(sqs_event(body), None, glue_client=glue, settings=settings())
    assert result == {"batchItemFailures": []}
    (messages,) = runs(glue, WORKFLOWS["mobile-toolbox/example"])
    assert messages == [
        {
            "source_bucket": "input-bucket",
            "source_key": "mobile-toolbox/example/2022/rec one+plus x.zip",
            "raw_folder_id": None,
        }
    ]


def test_bridge_notification_sends_its_record_to_each_study(glue):
    glue.create_workflow(Name="ns-mtb-other-s3-to-json")
    wf = dict(WORKFLOWS, **{"mobile-toolbox/other": "ns-mtb-other-s3-to-json"})
    body = sns(bridge_notification(studies=("example", "other", "unconfigured")))
    result = app.lambda_handler(sqs_event(body), None, glue_client=glue, settings=app.Settings(workflows=wf))
    assert result["batchItemFailures"] == []
    # Where Bridge wrote the upload (the record), not the study's copy, as the original Lambda.
    record = {"source_bucket": "raw", "source_key": "mobile-toolbox/rec.zip", "raw_folder_id": "syn1"}
    assert runs(glue, "ns-mtb-example-s3-to-json") == [[record]]
    assert runs(glue, "ns-mtb-other-s3-to-json") == [[record]]


def test_bridge_notifications_group_per_app_and_study_and_repeat_once(glue):
    first = bridge_notification(studies=("example",), key="mobile-toolbox/one.zip")
    second = bridge_notification(studies=("example",), key="mobile-toolbox/two.zip")
    second["record"]["rawFolderId"] = "syn2"
    recover = bridge_notification(app_id="recover", studies=("pilot",), key="recover/three.zip")
    result = app.lambda_handler(
        sqs_event(sns(first), sns(second), sns(recover), sns(first)), None, glue_client=glue, settings=settings()
    )
    assert result == {"batchItemFailures": []}
    assert runs(glue, WORKFLOWS["mobile-toolbox/example"]) == [
        [
            {"source_bucket": "raw", "source_key": "mobile-toolbox/one.zip", "raw_folder_id": "syn1"},
            {"source_bucket": "raw", "source_key": "mobile-toolbox/two.zip", "raw_folder_id": "syn2"},
        ]
    ]
    assert runs(glue, WORKFLOWS["recover/pilot"]) == [
        [{"source_bucket": "raw", "source_key": "recover/three.zip", "raw_folder_id": "syn1"}]
    ]


def test_a_bridge_record_without_raw_folder_is_read_from_its_bucket_as_given(glue):
    message = bridge_notification()
    del message["record"]["rawFolderId"]
    result = app.lambda_handler(sqs_event(sns(message)), None, glue_client=glue, settings=settings())
    assert result == {"batchItemFailures": []}
    assert runs(glue, WORKFLOWS["mobile-toolbox/example"]) == [
        [{"source_bucket": "raw", "source_key": "mobile-toolbox/rec.zip", "raw_folder_id": None}]
    ]


def test_test_event_is_skipped_per_record_not_per_batch(glue):
    test_event = sns({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "input-bucket"})
    mixed = sns({"Records": [{"eventName": "s3:TestEvent"}, s3_record("recover/pilot/a.zip")]})
    result = app.lambda_handler(sqs_event(test_event, mixed), None, glue_client=glue, settings=settings())
    assert result["batchItemFailures"] == []
    assert [m["source_key"] for m in runs(glue, WORKFLOWS["recover/pilot"])[0]] == ["recover/pilot/a.zip"]
    assert runs(glue, WORKFLOWS["mobile-toolbox/example"]) == []


def test_owner_txt_and_folder_keys_are_skipped(glue):
    body = sns(
        {
            "Records": [
                s3_record("mobile-toolbox/example/owner.txt"),
                s3_record("mobile-toolbox/example/"),
                s3_record("owner.txt"),
            ]
        }
    )
    result = app.lambda_handler(sqs_event(body), None, glue_client=glue, settings=settings())
    assert result["batchItemFailures"] == []
    assert runs(glue, WORKFLOWS["mobile-toolbox/example"]) == []


def test_groups_per_app_and_study_across_messages(glue):
    bodies = [
        sns({"Records": [s3_record(f"mobile-toolbox/example/{i}.zip"), s3_record(f"recover/pilot/{i}.zip")]})
        for i in range(3)
    ]
    bodies.append(sns(bridge_notification()))
    result = app.lambda_handler(sqs_event(*bodies), None, glue_client=glue, settings=settings())
    assert result["batchItemFailures"] == []
    (mtb,) = runs(glue, WORKFLOWS["mobile-toolbox/example"])
    (recover,) = runs(glue, WORKFLOWS["recover/pilot"])
    assert len(mtb) == 4 and len(recover) == 3


def test_duplicate_objects_in_a_batch_are_sent_once(glue):
    body = sns({"Records": [s3_record("recover/pilot/a.zip")]})
    app.lambda_handler(sqs_event(body, body), None, glue_client=glue, settings=settings())
    assert len(runs(glue, WORKFLOWS["recover/pilot"])[0]) == 1


def test_large_batches_are_split_within_limits(glue):
    records = [s3_record(f"mobile-toolbox/example/{'x' * 50}-{i:04d}.zip") for i in range(250)]
    body = sns({"Records": records})
    result = app.lambda_handler(
        sqs_event(body), None, glue_client=glue, settings=settings(max_messages=100, max_bytes=8000)
    )
    assert result["batchItemFailures"] == []
    batches = runs(glue, WORKFLOWS["mobile-toolbox/example"])
    assert sum(len(b) for b in batches) == 250
    assert all(len(json.dumps(b)) <= 8000 and len(b) <= 100 for b in batches)
    assert len(batches) > 3  # the byte limit, not only the count, split them


def test_split_runs_by_count():
    messages = [{"k": i} for i in range(7)]
    assert [len(b) for b in app.split_runs(messages, 3, 10**6)] == [3, 3, 1]


def test_malformed_message_fails_alone(glue):
    good = sns({"Records": [s3_record("recover/pilot/a.zip")]})
    bad_json = "not json"
    bad_key = sns({"Records": [s3_record("no-study-here.zip")]})
    unknown_shape = sns({"hello": "world"})
    result = app.lambda_handler(
        sqs_event(good, bad_json, bad_key, unknown_shape), None, glue_client=glue, settings=settings()
    )
    assert result == {
        "batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]
    }
    assert len(runs(glue, WORKFLOWS["recover/pilot"])) == 1


def test_failed_workflow_start_reports_only_its_messages(glue):
    glue.delete_workflow(Name=WORKFLOWS["recover/pilot"])  # starting it now fails
    bodies = [
        sns({"Records": [s3_record("mobile-toolbox/example/a.zip")]}),
        sns({"Records": [s3_record("recover/pilot/b.zip")]}),
    ]
    result = app.lambda_handler(sqs_event(*bodies), None, glue_client=glue, settings=settings())
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert len(runs(glue, WORKFLOWS["mobile-toolbox/example"])) == 1


def test_raw_message_delivery_is_accepted(glue):
    body = json.dumps({"Records": [s3_record("recover/pilot/raw.zip")]})
    result = app.lambda_handler(sqs_event(body), None, glue_client=glue, settings=settings())
    assert result["batchItemFailures"] == []
    assert runs(glue, WORKFLOWS["recover/pilot"])[0][0]["source_key"] == "recover/pilot/raw.zip"


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("WORKFLOWS", json.dumps(WORKFLOWS))
    monkeypatch.setenv("MAX_MESSAGES_PER_RUN", "7")
    s = app.Settings.from_env()
    assert s.workflows == WORKFLOWS and s.max_messages == 7 and s.max_bytes == 60000


def test_sample_events_parse():
    for name in ("s3-event.json", "bridge-notification.json"):
        event = json.loads((LAMBDA_DIR / "events" / name).read_text())
        sources = app.parse_body(event["Records"][0]["body"], app.Settings(workflows={}).key_pattern)
        assert sources and sources[0].app_id == "mobile-toolbox"


def test_records_that_name_no_object_are_skipped_and_their_message_still_runs(glue, caplog):
    bad_records = [
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": None}, "object": {"key": "recover/pilot/n.zip"}}},
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "input-bucket"}, "object": {"key": None}}},
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "input-bucket"}, "object": {}}},
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {}, "object": {"key": "recover/pilot/m.zip"}}},
        {"eventName": "ObjectCreated:Put", "s3": None},
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": ""}, "object": {"key": "recover/pilot/e.zip"}}},
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": 7}, "object": {"key": "recover/pilot/i.zip"}}},
        "not a record",
    ]
    mixed = sns({"Records": [*bad_records, s3_record("recover/pilot/good.zip")]})
    other = sns({"Records": [s3_record("mobile-toolbox/example/other.zip")]})
    with caplog.at_level("ERROR"):
        result = app.lambda_handler(sqs_event(mixed, other), None, glue_client=glue, settings=settings())
    assert result == {"batchItemFailures": []}
    assert runs(glue, WORKFLOWS["recover/pilot"]) == [
        [{"source_bucket": "input-bucket", "source_key": "recover/pilot/good.zip", "raw_folder_id": None}]
    ]
    assert [m["source_key"] for m in runs(glue, WORKFLOWS["mobile-toolbox/example"])[0]] == [
        "mobile-toolbox/example/other.zip"
    ]
    skipped = [r.getMessage() for r in caplog.records if "names no object" in r.getMessage()]
    assert len(skipped) == len(bad_records) and skipped[0].startswith("skipping S3 event record 0")


def test_a_null_bucket_alone_starts_no_run_and_fails_nothing(glue):
    body = sns({"Records": [{"s3": {"bucket": {"name": None}, "object": {"key": "recover/pilot/a.zip"}}}]})
    bridge = bridge_notification(studies=("example",))
    bridge["record"]["s3Bucket"] = None
    result = app.lambda_handler(sqs_event(body, sns(bridge)), None, glue_client=glue, settings=settings())
    assert result == {"batchItemFailures": []}
    assert runs(glue, WORKFLOWS["recover/pilot"]) == [] and runs(glue, WORKFLOWS["mobile-toolbox/example"]) == []


def test_a_bridge_record_without_bucket_or_key_is_skipped_and_the_batch_still_runs(glue, caplog):
    no_key = bridge_notification(key="mobile-toolbox/a.zip")
    del no_key["record"]["s3Key"]
    no_record = bridge_notification(key="mobile-toolbox/b.zip")
    no_record["record"] = None
    # A study's own copy names an object, but the record is what is read.
    no_record["studyRecords"]["example"] = {"s3Bucket": "raw", "s3Key": "mobile-toolbox/example/b.zip"}
    good = bridge_notification(key="mobile-toolbox/c.zip")
    good["studyRecords"]["example"] = None  # only the study id matters
    with caplog.at_level("ERROR"):
        result = app.lambda_handler(
            sqs_event(sns(no_key), sns(no_record), sns(good)), None, glue_client=glue, settings=settings()
        )
    assert result == {"batchItemFailures": []}
    assert runs(glue, WORKFLOWS["mobile-toolbox/example"]) == [
        [{"source_bucket": "raw", "source_key": "mobile-toolbox/c.zip", "raw_folder_id": "syn1"}]
    ]
    assert sum("names no object" in r.getMessage() for r in caplog.records) == 2


def test_a_message_of_the_wrong_shape_fails_alone_never_the_batch(glue, monkeypatch):
    good = sns({"Records": [s3_record("recover/pilot/a.zip")]})
    records_null = sns({"Records": None})
    study_records_list = sns({"appId": "mobile-toolbox", "studyRecords": ["example"]})
    app_id_object = sns({"appId": {"x": 1}, "studyRecords": {}})
    surprising = sns({"Records": [s3_record("recover/pilot/surprise.zip")]})
    real_parse = app.parse_body

    def parse_body(body, pattern):  # a failure no rule foresaw, in one message
        if "surprise" in body:
            raise RuntimeError("unforeseen")
        return real_parse(body, pattern)

    monkeypatch.setattr(app, "parse_body", parse_body)
    result = app.lambda_handler(
        sqs_event(good, records_null, study_records_list, app_id_object, surprising),
        None,
        glue_client=glue,
        settings=settings(),
    )
    assert result == {"batchItemFailures": [{"itemIdentifier": f"m{i}"} for i in (1, 2, 3, 4)]}
    assert [m["source_key"] for m in runs(glue, WORKFLOWS["recover/pilot"])[0]] == ["recover/pilot/a.zip"]
