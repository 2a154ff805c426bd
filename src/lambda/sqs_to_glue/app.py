"""sqs_to_glue: SQS batch -> one S3-to-JSON Glue workflow run per app and study.

The input queue receives, through SNS subscriptions, two kinds of message:

* S3 event notifications of the input bucket (SNS envelope, ``Message`` is
  the S3 event with ``Records[]``, or an ``s3:TestEvent``). The app and study
  come from the object key (``S3_KEY_PATTERN``, default ``<appId>/<studyId>/...``).
* Bridge (Exporter 3) notifications (SNS envelope, ``Message`` is
  ``{"appId", "recordId", "record": {"s3Bucket", "s3Key", "rawFolderId", ...},
  "studyRecords": {"<studyId>": {...same fields...}}}``): the upload the
  ``record`` names (where Bridge wrote it, read through an STS token for its
  ``rawFolderId``), once for each study in ``studyRecords``, as the original
  Lambda did; the studies' own copies are not read.

Messages are grouped per app and study and a workflow run is started for each
group with run property ``messages`` = JSON list of
``{"source_bucket", "source_key", "raw_folder_id"}``; a group is split into
several runs so that no run carries more than ``MAX_MESSAGES_PER_RUN``
messages or ``MAX_RUN_PROPERTIES_BYTES`` of run properties.

The function reports partial batch failures (``ReportBatchItemFailures``): an
SQS message that cannot be parsed, or whose workflow run could not be started,
is returned in ``batchItemFailures`` and retried alone; after the queue's
``maxReceiveCount`` it moves to the dead-letter queue. Nothing in one message
fails the batch. Messages that need no work (test events, ``owner.txt``,
folder keys, apps/studies this namespace does not run) succeed without a run.

Bursts: when Glue refuses a start because the workflow is at its concurrency
limit or the API is throttled (``ConcurrentRunsExceededException``,
``ThrottlingException``), the message is not a failure. A copy is sent back to
the queue with ``DelaySeconds`` growing per attempt (attribute
``throttle-requeues``) and the original succeeds, so its receive count -- the
dead-letter counter -- never grows for back-pressure. Only after
``MAX_THROTTLE_REQUEUES`` requeues, or when the copy cannot be sent, is it
reported as a batch item failure (docs/decisions/0020-versioned-artifacts-and-backpressure.md).

A record that names no object -- its bucket or key missing, null, empty or
not a string -- is skipped with an error in the log, never sent to a run: no
retry can give it an object, and failing its message would hold back (and
finally dead-letter) the message's other records, which name real uploads.

Environment:
    WORKFLOWS                 JSON {"<appId>/<studyId>": "<workflow name>"}
    MAX_MESSAGES_PER_RUN      default 100
    MAX_RUN_PROPERTIES_BYTES  default 60000 (Glue rejects larger run properties)
    S3_KEY_PATTERN            regex with named groups app_id and study_id
    MAX_THROTTLE_REQUEUES     default 12 (with the delays below: about 2.5 hours of back-pressure)
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import unquote_plus

logger = logging.getLogger()
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

DEFAULT_KEY_PATTERN = r"^(?P<app_id>[^/]+)/(?P<study_id>[^/]+)/"
SKIPPED_NAMES = frozenset({"owner.txt"})
# Glue's answers that mean "not now", never "this message is wrong".
BACKPRESSURE_ERRORS = frozenset({"ConcurrentRunsExceededException", "ThrottlingException"})
REQUEUE_ATTRIBUTE = "throttle-requeues"
FIRST_REQUEUE_DELAY_SECONDS = 30
MAX_SQS_DELAY_SECONDS = 900  # SQS's limit on DelaySeconds


class MessageError(ValueError):
    """An SQS message that cannot be understood (retried, then dead-lettered)."""


@dataclass(frozen=True)
class SourceMessage:
    app_id: str
    study_id: str
    source_bucket: str
    source_key: str
    raw_folder_id: str | None = None

    def as_property(self) -> dict:
        return {"source_bucket": self.source_bucket, "source_key": self.source_key, "raw_folder_id": self.raw_folder_id}


# ------------------------------------------------------------------ parsing


def skip_reason(key: str) -> str | None:
    """Why an object key needs no processing, or None."""
    if not key or key.endswith("/"):
        return "folder key"
    if key.rsplit("/", 1)[-1] in SKIPPED_NAMES:
        return "owner.txt"
    return None


def _named_object(bucket: object, key: object) -> tuple[str, str] | None:
    """(bucket, key) when both are non-empty strings; None when a record names no object."""
    if isinstance(bucket, str) and bucket and isinstance(key, str) and key:
        return bucket, key
    return None


def _member(value: object, *path: str) -> object:
    """``value[path[0]][path[1]]...``, or None where a level is missing or not an object."""
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    return value


def _unwrap_sns(body: str) -> dict:
    try:
        envelope = json.loads(body)
    except (TypeError, json.JSONDecodeError) as error:
        raise MessageError(f"body is not JSON: {error}") from error
    if not isinstance(envelope, dict):
        raise MessageError("body is not a JSON object")
    if "Message" in envelope and envelope.get("Type", "Notification") == "Notification":
        message = envelope["Message"]
        if isinstance(message, str):
            try:
                message = json.loads(message)
            except json.JSONDecodeError as error:
                raise MessageError(f"SNS Message is not JSON: {error}") from error
        if not isinstance(message, dict):
            raise MessageError("SNS Message is not a JSON object")
        return message
    return envelope  # raw message delivery


def parse_s3_event(message: dict, key_pattern: re.Pattern) -> list[SourceMessage]:
    records = message.get("Records")
    if not isinstance(records, list):
        raise MessageError("S3 event whose Records is not a list")
    found = []
    for number, record in enumerate(records):
        if _member(record, "eventName") == "s3:TestEvent" or _member(record, "Event") == "s3:TestEvent":
            continue
        named = _named_object(_member(record, "s3", "bucket", "name"), _member(record, "s3", "object", "key"))
        if named is None:
            logger.error(
                "skipping S3 event record %d, which names no object (bucket or key missing): %.500r", number, record
            )
            continue
        bucket, key = named[0], unquote_plus(named[1])
        reason = skip_reason(key)
        if reason:
            logger.info("skipping s3://%s/%s: %s", bucket, key, reason)
            continue
        match = key_pattern.match(key)
        if not match:
            raise MessageError(f"key {key!r} does not name an app and study ({key_pattern.pattern})")
        found.append(SourceMessage(match["app_id"], match["study_id"], bucket, key))
    return found


def parse_bridge_notification(message: dict) -> list[SourceMessage]:
    """The notification's ``record`` once per study of ``studyRecords`` (its keys)."""
    app_id = message.get("appId")
    if not app_id:
        raise MessageError("Bridge notification without appId")
    if not isinstance(app_id, str):
        raise MessageError("Bridge notification whose appId is not a string")
    study_records = message.get("studyRecords") or {}
    if not isinstance(study_records, dict):
        raise MessageError("Bridge notification whose studyRecords is not an object")
    if not study_records:
        logger.info("Bridge notification for app %s, record %s has no studyRecords", app_id, message.get("recordId"))
        return []
    record = message.get("record")
    named = _named_object(_member(record, "s3Bucket"), _member(record, "s3Key"))
    if named is None:
        logger.error(
            "skipping record %s of app %s: its record names no object (s3Bucket or s3Key missing)",
            message.get("recordId"),
            app_id,
        )
        return []
    bucket, key = named
    if skip_reason(key):
        return []
    raw_folder_id = _member(record, "rawFolderId")
    folder = raw_folder_id if isinstance(raw_folder_id, str) and raw_folder_id else None
    return [SourceMessage(app_id, study_id, bucket, key, folder) for study_id in study_records]


def parse_body(body: str, key_pattern: re.Pattern) -> list[SourceMessage]:
    """The source objects one SQS message asks to process (may be empty)."""
    message = _unwrap_sns(body)
    if message.get("Event") == "s3:TestEvent":
        return []
    if "Records" in message:
        return parse_s3_event(message, key_pattern)
    if "appId" in message and ("record" in message or "studyRecords" in message):
        return parse_bridge_notification(message)
    raise MessageError("neither an S3 event nor a Bridge notification")


# ------------------------------------------------------------------ batching


def split_runs(messages: list[dict], max_messages: int, max_bytes: int) -> list[list[dict]]:
    """Split messages into runs whose ``messages`` property stays within limits."""
    runs: list[list[dict]] = []
    current: list[dict] = []
    size = 2  # "[]"
    for message in messages:
        item = len(json.dumps(message)) + 2  # ", "
        if item + 2 > max_bytes:
            raise MessageError(f"one message is larger than the run property limit: {message}")
        if current and (len(current) >= max_messages or size + item > max_bytes):
            runs.append(current)
            current, size = [], 2
        current.append(message)
        size += item
    if current:
        runs.append(current)
    return runs


# ------------------------------------------------------------------ handler


@dataclass
class Settings:
    workflows: dict[str, str]
    max_messages: int = 100
    max_bytes: int = 60000
    key_pattern: re.Pattern = re.compile(DEFAULT_KEY_PATTERN)
    max_throttle_requeues: int = 12

    @classmethod
    def from_env(cls, env=os.environ) -> Settings:
        return cls(
            workflows=json.loads(env.get("WORKFLOWS", "{}")),
            max_messages=int(env.get("MAX_MESSAGES_PER_RUN", "100")),
            max_bytes=int(env.get("MAX_RUN_PROPERTIES_BYTES", "60000")),
            key_pattern=re.compile(env.get("S3_KEY_PATTERN", DEFAULT_KEY_PATTERN)),
            max_throttle_requeues=int(env.get("MAX_THROTTLE_REQUEUES", "12")),
        )


def _glue_client():
    import boto3

    return boto3.client("glue")


def _sqs_client():
    import boto3

    return boto3.client("sqs")


def is_backpressure(error: Exception) -> bool:
    code = getattr(error, "response", {}).get("Error", {}).get("Code")
    return code in BACKPRESSURE_ERRORS or type(error).__name__ in BACKPRESSURE_ERRORS


def requeue_count(record: dict) -> int:
    attribute = (record.get("messageAttributes") or {}).get(REQUEUE_ATTRIBUTE) or {}
    try:
        return int(attribute.get("stringValue", 0))
    except (TypeError, ValueError):
        return 0


def requeue_delay_seconds(requeues: int) -> int:
    """Exponential backoff for the ``requeues``-th copy, within SQS's limit."""
    return min(MAX_SQS_DELAY_SECONDS, FIRST_REQUEUE_DELAY_SECONDS * 2**requeues)


def queue_url_of(record: dict, sqs) -> str:
    """The URL of the queue an SQS event record came from (``eventSourceARN``)."""
    _, _, _, _, account, name = record["eventSourceARN"].split(":", 5)
    return sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]


def requeue_with_delay(record: dict, sqs) -> bool:
    """Send a delayed copy of ``record`` to its queue; False when that is not possible."""
    requeues = requeue_count(record)
    try:
        sqs.send_message(
            QueueUrl=queue_url_of(record, sqs),
            MessageBody=record["body"],
            DelaySeconds=requeue_delay_seconds(requeues),
            MessageAttributes={REQUEUE_ATTRIBUTE: {"DataType": "Number", "StringValue": str(requeues + 1)}},
        )
    except Exception:
        logger.exception("could not requeue message %s", record.get("messageId"))
        return False
    return True


def lambda_handler(event, context, glue_client=None, settings: Settings | None = None, sqs_client=None):
    settings = settings or Settings.from_env()
    failures: set[str] = set()
    backpressured: set[str] = set()
    records_by_id = {record.get("messageId", ""): record for record in event.get("Records") or []}
    # (app, study) -> ordered {message json: set of SQS message ids}
    groups: dict[tuple[str, str], OrderedDict[str, set[str]]] = {}
    for record in event.get("Records") or []:
        message_id = record.get("messageId", "")
        try:
            sources = parse_body(record.get("body", ""), settings.key_pattern)
        except MessageError as error:
            logger.error("message %s rejected: %s", message_id, error)
            failures.add(message_id)
            continue
        except Exception:  # a message no rule foresaw: it fails (and is retried) alone, not the batch
            logger.exception("message %s could not be read", message_id)
            failures.add(message_id)
            continue
        for source in sources:
            key = f"{source.app_id}/{source.study_id}"
            if key not in settings.workflows:
                logger.info(
                    "no pipeline for %s in this namespace; skipping s3://%s/%s",
                    key,
                    source.source_bucket,
                    source.source_key,
                )
                continue
            item = json.dumps(source.as_property(), sort_keys=True)
            groups.setdefault((source.app_id, source.study_id), OrderedDict()).setdefault(item, set()).add(message_id)

    glue = None
    runs_started = []
    for (app_id, study_id), items in groups.items():
        workflow = settings.workflows[f"{app_id}/{study_id}"]
        ids_of = {item: ids for item, ids in items.items()}
        pending = [json.loads(item) for item, ids in items.items() if not ids & failures]
        try:
            batches = split_runs(pending, settings.max_messages, settings.max_bytes)
        except MessageError as error:
            logger.error("%s/%s: %s", app_id, study_id, error)
            failures.update(i for ids in ids_of.values() for i in ids)
            continue
        for batch in batches:
            batch_ids = {i for m in batch for i in ids_of[json.dumps(m, sort_keys=True)]}
            if batch_ids <= failures:
                continue
            try:
                glue = glue or glue_client or _glue_client()
                run_id = glue.start_workflow_run(Name=workflow, RunProperties={"messages": json.dumps(batch)})["RunId"]
            except Exception as error:  # noqa: BLE001 -- any failure retries the batch's messages
                if is_backpressure(error):
                    logger.warning("%s is at capacity, %d messages wait: %s", workflow, len(batch), error)
                    backpressured.update(batch_ids)
                else:
                    logger.error("could not start %s for %d messages: %s", workflow, len(batch), error)
                    failures.update(batch_ids)
                continue
            runs_started.append(run_id)
            logger.info("started %s run %s with %d messages", workflow, run_id, len(batch))

    sqs = None
    for message_id in sorted(backpressured - failures):
        record = records_by_id[message_id]
        if requeue_count(record) >= settings.max_throttle_requeues or "eventSourceARN" not in record:
            failures.add(message_id)
            continue
        sqs = sqs or sqs_client or _sqs_client()
        if not requeue_with_delay(record, sqs):
            failures.add(message_id)
    return {"batchItemFailures": [{"itemIdentifier": i} for i in sorted(failures)]}
