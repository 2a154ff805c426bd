"""The invalid sink in AWS: one SQS message per invalid record, and a durable
copy of each in S3 (the queue keeps messages 14 days at most; replay must
work later, docs/operations.md)."""

from __future__ import annotations

import json

import boto3

from bridge_downstream.ingest.invalid_sink import InvalidSink

SQS_MAX_MESSAGE_BYTES = 256 * 1024


class SqsInvalidSink:
    def __init__(self, queue_url: str, client=None):
        self.queue_url = queue_url
        self.client = client or boto3.client("sqs")

    def send(self, entry: dict) -> None:
        body = json.dumps(entry, sort_keys=True)
        if len(body.encode()) > SQS_MAX_MESSAGE_BYTES:
            # Keep the record's identity and reason; drop the bulky parts.
            slim = {k: v for k, v in entry.items() if k not in ("metadata",)}
            slim["validation_result"] = {
                **entry["validation_result"],
                "errors": {f: m[:1] for f, m in entry["validation_result"]["errors"].items()},
            }
            body = json.dumps(slim, sort_keys=True)
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def receive(self, max_messages: int = 10, wait_seconds: int = 0) -> list[tuple[str, dict]]:
        """(receipt handle, entry) pairs, for listing and replay."""
        response = self.client.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait_seconds
        )
        return [(m["ReceiptHandle"], json.loads(m["Body"])) for m in response.get("Messages", [])]

    def delete(self, receipt_handle: str) -> None:
        self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt_handle)


class DurableInvalidSink:
    """Writes each entry to ``durable`` (the pipeline root's ``invalid/`` in S3)
    before announcing it on ``announce`` (the queue): an entry announced is
    always also kept, so a replay finds it after the queue has dropped it."""

    def __init__(self, durable: InvalidSink, announce: InvalidSink):
        self.durable = durable
        self.announce = announce

    def send(self, entry: dict) -> None:
        self.durable.send(entry)
        self.announce.send(entry)
