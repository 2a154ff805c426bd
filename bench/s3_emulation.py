"""Emulated S3 (and SQS) for the benchmark: one moto server on 127.0.0.1.

``bench/run.py`` starts one server process for the emulated-S3 rows, shared by
both ingest implementations, and stops it at the end. The server stands in
for S3: it is not a child of the measured step, so its memory is never in a
step's peak RSS; its own RSS and the CPU time it spent serving each step are
recorded next to the results.

    pipenv run python bench/s3_emulation.py serve --port 5123   # what run.py starts

Set-up helpers (untimed): create buckets and a queue, upload generated
archives with their Bridge metadata (the generator's ``<archive>.metadata.json``
sidecars) as S3 object metadata, as Bridge writes them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Self

HERE = Path(__file__).resolve().parent

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def aws_environment(endpoint: str) -> dict[str, str]:
    """What the step processes get: fake credentials and the emulator as every service's endpoint."""
    return {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "AWS_SESSION_TOKEN": "testing"}


class MotoServer:
    """A moto server in its own process (``serve`` below), on a free port."""

    def __init__(self, log: str | os.PathLike | None = None):
        self.log = Path(log) if log else None  # the server's stderr (errors only); discarded when None
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.peak_rss = 0
        self._done = threading.Event()
        self._sampler: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> Self:
        # stderr to a file, never a pipe nobody reads (a full pipe blocks the server).
        err = open(self.log, "w") if self.log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
        try:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "serve", "--port", str(self.port)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        finally:
            if self.log:
                err.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text()[-2000:] if self.log else "(no log)"
                raise RuntimeError(f"moto server exited at start: {tail}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"moto server did not listen on {self.endpoint} within {timeout:.0f} s")
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        import psutil

        process = psutil.Process(self.process.pid)
        while not self._done.is_set():
            try:
                self.peak_rss = max(self.peak_rss, process.memory_info().rss)
            except psutil.Error:
                return
            self._done.wait(0.2)

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far."""
        import psutil

        try:
            times = psutil.Process(self.process.pid).cpu_times()
        except (psutil.Error, AttributeError):
            return 0.0
        return times.user + times.system

    def rss(self) -> int:
        import psutil

        try:
            return psutil.Process(self.process.pid).memory_info().rss
        except (psutil.Error, AttributeError):
            return 0

    def stop(self) -> None:
        self._done.set()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _client(service: str, endpoint: str):
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def create_bucket(endpoint: str, bucket: str) -> None:
    _client("s3", endpoint).create_bucket(Bucket=bucket)


def create_queue(endpoint: str, name: str) -> str:
    return _client("sqs", endpoint).create_queue(QueueName=name)["QueueUrl"]


def queue_length(endpoint: str, queue_url: str) -> int:
    attributes = _client("sqs", endpoint).get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def upload_archives(endpoint: str, folder: Path, bucket: str, prefix: str, threads: int = 8) -> tuple[int, int]:
    """Every ``*.zip`` under ``folder`` to ``s3://bucket/prefix/<relative path>``
    with its sidecar's Bridge metadata as the object's metadata; (count, bytes)."""
    create_bucket(endpoint, bucket)
    files = sorted(folder.rglob("*.zip"))
    local = threading.local()

    def put(path: Path) -> int:
        if not hasattr(local, "client"):
            local.client = _client("s3", endpoint)
        sidecar = path.with_name(path.name + ".metadata.json")
        metadata = (
            {str(k).lower(): str(v) for k, v in json.loads(sidecar.read_text()).items()} if sidecar.is_file() else {}
        )
        data = path.read_bytes()
        key = "/".join(p for p in (prefix.strip("/"), path.relative_to(folder).as_posix()) if p)
        local.client.put_object(Bucket=bucket, Key=key, Body=data, Metadata=metadata)
        return len(data)

    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(put, files))
    return len(files), total


def list_objects(client, bucket: str, prefix: str, suffix: str = "") -> list[tuple[str, int]]:
    """(key, size) of every object under ``prefix`` ending with ``suffix``, in key order."""
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith(suffix):
                found.append((item["Key"], item["Size"]))
    return sorted(found)


def count_dataset_rows(client, bucket: str, prefix: str) -> dict[str, int]:
    """Lines of every ``*.ndjson`` under ``prefix/json/dataset=X/``, by dataset X (reads the output back)."""
    root = "/".join(p for p in (prefix.strip("/"), "json/") if p)
    counts: dict[str, int] = {}
    for key, _ in list_objects(client, bucket, root, ".ndjson"):
        dataset = key[len(root) :].split("/", 1)[0]
        if not dataset.startswith("dataset="):
            continue
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        counts[dataset[len("dataset=") :]] = counts.get(dataset[len("dataset=") :], 0) + body.count(b"\n")
    return dict(sorted(counts.items()))


def serve(port: int) -> int:
    """Run a moto server until SIGTERM/SIGINT (request logging off)."""
    import faulthandler

    from moto.server import ThreadedMotoServer

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1 <pid>: every thread's stack to stderr
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request (costs the server CPU time)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve")
    run.add_argument("--port", type=int, default=int(os.environ.get("MOTO_PORT", "5000")))
    args = parser.parse_args(argv)
    return serve(args.port)


if __name__ == "__main__":
    sys.exit(main())
