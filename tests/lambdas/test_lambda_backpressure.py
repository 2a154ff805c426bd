"""sqs_to_glue under bursts: a workflow at its concurrency limit (or a
throttled Glue API) requeues the message with a growing delay instead of
failing it, so back-pressure never moves messages toward the dead-letter
queue; real failures still do. moto's SQS and Glue, handler called directly."""

from __future__ import annotations

import importlib.util
import json
import sys

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from project_paths import PROJECT_ROOT

WORKFLOW = "ns-mtb-example-s3-to-json"


def load_lambda():
    spec = importlib.util.spec_from_file_location(
        "sqs_to_glue_backpressure", PROJECT_ROOT / "src" / "lambda" / "sqs_to_glue" / "app.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


app = load_lambda()


class GlueAtCapacity:
    """Glue whose workflow accepts ``capacity`` runs, then answers ``code``."""

    def __init__(self, glue, capacity: int, code: str = "ConcurrentRunsExceededException"):
        self.glue, self.capacity, self.code = glue, capacity, code

    def start_workflow_run(self, **kwargs):
        if self.capacity <= 0:
            raise ClientError({"Error": {"Code": self.code, "Message": "at capacity"}}, "StartWorkflowRun")
        self.capacity -= 1
        return self.glue.start_workflow_run(**kwargs)


@pytest.fixture
def aws():
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_workflow(Name=WORKFLOW)
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="ns-input")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        yield glue, sqs, url, arn


def record(number: int, arn: str, requeues: int | None = None) -> dict:
    body = json.dumps(
        {"Records": [{"s3": {"bucket": {"name": "in"}, "object": {"key": f"mobile-toolbox/example/{number}.zip"}}}]}
    )
    item = {"messageId": f"m{number}", "receiptHandle": f"r{number}", "body": body, "eventSourceARN": arn}
    if requeues is not None:
        item["messageAttributes"] = {app.REQUEUE_ATTRIBUTE: {"stringValue": str(requeues), "dataType": "Number"}}
    return item


def settings(**kw):
    return app.Settings(workflows={"mobile-toolbox/example": WORKFLOW}, max_messages=1, **kw)


def delayed_copies(sqs, url) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"])


@pytest.mark.parametrize("code", sorted(app.BACKPRESSURE_ERRORS))
def test_backpressure_requeues_with_delay_and_reports_no_failure(aws, code):
    glue, sqs, url, arn = aws
    event = {"Records": [record(n, arn) for n in range(3)]}
    result = app.lambda_handler(
        event, None, glue_client=GlueAtCapacity(glue, capacity=1, code=code), settings=settings(), sqs_client=sqs
    )
    assert result == {"batchItemFailures": []}
    assert len(glue.get_workflow_runs(Name=WORKFLOW)["Runs"]) == 1
    assert delayed_copies(sqs, url) == 2


def test_the_copy_is_sent_with_attempt_count_and_growing_delay():
    sent = []

    class RecordingSqs:
        def get_queue_url(self, QueueName, QueueOwnerAWSAccountId):
            return {"QueueUrl": f"https://sqs/{QueueOwnerAWSAccountId}/{QueueName}"}

        def send_message(self, **kwargs):
            sent.append(kwargs)

    class FullGlue:
        def start_workflow_run(self, **kwargs):
            raise ClientError({"Error": {"Code": "ConcurrentRunsExceededException"}}, "StartWorkflowRun")

    arn = "arn:aws:sqs:us-east-1:123456789012:ns-input"
    original = record(1, arn, requeues=3)
    result = app.lambda_handler(
        {"Records": [original]}, None, glue_client=FullGlue(), settings=settings(), sqs_client=RecordingSqs()
    )
    assert result == {"batchItemFailures": []}
    (copy,) = sent
    assert copy["QueueUrl"] == "https://sqs/123456789012/ns-input"
    assert copy["MessageBody"] == original["body"]
    assert copy["DelaySeconds"] == 240
    assert copy["MessageAttributes"][app.REQUEUE_ATTRIBUTE] == {"DataType": "Number", "StringValue": "4"}


def test_delays_grow_and_stop_at_the_sqs_limit():
    assert [app.requeue_delay_seconds(n) for n in range(7)] == [30, 60, 120, 240, 480, 900, 900]


def test_after_the_last_requeue_backpressure_becomes_a_real_failure(aws):
    glue, sqs, url, arn = aws
    exhausted = record(1, arn, requeues=3)
    result = app.lambda_handler(
        {"Records": [exhausted, record(2, arn, requeues=1)]},
        None,
        glue_client=GlueAtCapacity(glue, 0),
        settings=settings(max_throttle_requeues=3),
        sqs_client=sqs,
    )
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert delayed_copies(sqs, url) == 1


def test_a_copy_that_cannot_be_sent_falls_back_to_an_ordinary_retry(aws):
    glue, sqs, _, arn = aws
    missing_queue = arn.rsplit(":", 1)[0] + ":no-such-queue"
    result = app.lambda_handler(
        {"Records": [record(1, missing_queue)]},
        None,
        glue_client=GlueAtCapacity(glue, 0),
        settings=settings(),
        sqs_client=sqs,
    )
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}


def test_a_real_start_failure_still_counts_toward_the_dead_letter_queue(aws):
    glue, sqs, url, arn = aws
    result = app.lambda_handler(
        {"Records": [record(1, arn)]},
        None,
        glue_client=GlueAtCapacity(glue, 0, code="EntityNotFoundException"),
        settings=settings(),
        sqs_client=sqs,
    )
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert delayed_copies(sqs, url) == 0


def test_max_throttle_requeues_from_environment():
    assert app.Settings.from_env({"MAX_THROTTLE_REQUEUES": "5"}).max_throttle_requeues == 5
    assert app.Settings.from_env({}).max_throttle_requeues == 12
