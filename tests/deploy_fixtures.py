"""Helpers for the deployment tests: sceptre (deploy/.venv, a subprocess),
cfn-lint, and a moto server with an emulated deployment on it.

Reuse in another test module::

    from deploy_fixtures import emulated_deployment
    with emulated_deployment(tmp_path, group="develop", namespace="e2e", registry=reg) as deployment:
        deployment.buckets["InputBucketName"]          # stack outputs
        deployment.poll_lambda(handler)                # play Lambda's SQS poller
        deployment.client("glue")                      # clients on the emulated endpoint
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCEPTRE = ROOT / "deploy" / ".venv" / "bin" / "sceptre"
CFN_LINT = ROOT / ".venv" / "bin" / "cfn-lint"
STACK_GROUPS = ("develop", "prod")


def require_sceptre() -> Path:
    if not SCEPTRE.exists():
        pytest.skip(f"deployment tools not installed ({SCEPTRE} missing; run `make deploy-tools`)")
    return SCEPTRE


def fake_aws_env(endpoint: str | None = None, region: str = "us-east-1") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION=region,
        AWS_REGION=region,
    )
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


def sceptre(
    args: list[str],
    *,
    cwd: Path,
    namespace: str | None = None,
    endpoint: str | None = None,
    extra_vars: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run deploy/.venv/bin/sceptre on this project (``--dir ROOT``) from ``cwd``."""
    command = [str(require_sceptre()), "--dir", str(ROOT)]
    for key, value in ({"namespace": namespace} if namespace else {}).items() | (extra_vars or {}).items():
        command += ["--var", f"{key}={value}"]
    command += args
    result = subprocess.run(
        command, cwd=cwd, env=fake_aws_env(endpoint), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"sceptre {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def render_group(group: str, out_dir: Path, namespace: str | None = None) -> dict[str, Path]:
    """Render every stack of a group (``sceptre dump template --to-file``):
    CloudFormation stack name -> rendered template.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sceptre(["--output", "json", "dump", "template", "--to-file", group], cwd=out_dir, namespace=namespace)
    return {p.parent.name: p for p in sorted((out_dir / ".dump").glob("*/template.json"))}


def cfn_lint(paths: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CFN_LINT), "--format", "parseable", *map(str, paths)], capture_output=True, text=True, check=False
    )


def lint_findings(result: subprocess.CompletedProcess, level: str = "E") -> list[str]:
    """cfn-lint ``--format parseable`` lines (file:line:col:line:col:RULE:message)
    whose rule id starts with ``level`` (E errors, W warnings)."""
    found = []
    for line in result.stdout.splitlines():
        parts = line.split(":", 6)
        if len(parts) == 7 and parts[5].startswith(level):
            found.append(line)
    return found


# ------------------------------------------------------------------ emulated deployment


@dataclass
class Deployment:
    """A launched, completed, emulated deployment of one group and namespace."""

    endpoint: str
    group: str
    namespace: str
    session: object
    stacks: list[str] = field(default_factory=list)  # CloudFormation names, launch order
    launch_seconds: float = 0.0

    def client(self, service: str):
        return self.session.client(service, endpoint_url=self.endpoint)

    def outputs(self, stack_name: str) -> dict[str, str]:
        stack = self.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    @property
    def buckets(self) -> dict[str, str]:
        return self.outputs(f"bridge-downstream-{self.group}-buckets")

    @property
    def queues(self) -> dict[str, str]:
        return self.outputs(f"{self.namespace}-queues")

    def lambda_environment(self) -> dict[str, str]:
        function = f"{self.namespace}-sqs-to-glue"
        return self.client("lambda").get_function(FunctionName=function)["Configuration"]["Environment"]["Variables"]

    def poll_lambda(self, handler, max_batches: int = 20, batch_size: int = 10) -> list[dict]:
        """Play Lambda's SQS poller: receive batches from the input queue, call the
        handler in-process, delete the messages it did not report as failures.
        Failed messages stay in flight; :meth:`expire_in_flight` makes them visible
        again (as their visibility timeout would)."""
        sqs = self.client("sqs")
        url = self.queues["InputQueueUrl"]
        responses = []
        for _ in range(max_batches):
            received = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=batch_size, AttributeNames=["All"], WaitTimeSeconds=0
            ).get("Messages", [])
            if not received:
                break
            event = {
                "Records": [
                    {
                        "messageId": m["MessageId"],
                        "receiptHandle": m["ReceiptHandle"],
                        "body": m["Body"],
                        "attributes": m.get("Attributes", {}),
                        "eventSource": "aws:sqs",
                    }
                    for m in received
                ]
            }
            response = handler(event, None)
            responses.append(response)
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            for message in received:
                if message["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                else:
                    # the visibility timeout elapsing, without waiting for it
                    sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
        return responses


def launch(
    endpoint: str,
    group: str,
    namespace: str,
    work_dir: Path,
    registry: Path | None = None,
    extra_vars: dict[str, str] | None = None,
) -> Deployment:
    """First deploy, as docs/deployment.md describes it: shared buckets stack,
    artifacts.py --upload, then the whole group; then the harness completes what
    moto's CloudFormation skipped and disables the event source mappings.
    ``extra_vars``: sceptre vars of this launch (e.g. a rehearsal's own Synapse folders)."""
    import time

    import boto3

    sys.path.insert(0, str(ROOT / "src" / "scripts" / "manage_artifacts"))
    import artifacts as artifacts_script

    from bridge_downstream_adapters.cfn_harness import Harness, disable_event_source_mappings

    started = time.monotonic()
    os.environ["AWS_ENDPOINT_URL"] = endpoint  # in-process boto3 clients created from here on
    session = boto3.session.Session(region_name="us-east-1")
    # a branch namespace never launches the shared stacks: force them here (as on
    # a new account's first deploy, docs/deployment.md)
    shared = {"launch_shared": "true", **(extra_vars or {})}
    sceptre(
        ["launch", "-y", f"{group}/buckets.yaml"],
        cwd=work_dir,
        namespace=namespace,
        endpoint=endpoint,
        extra_vars=shared,
    )
    argv = ["--upload", "--ref", namespace, "--stack-group", group]
    if registry is not None:
        argv += ["--registry", str(registry)]
        if group == "prod":
            argv.append("--force")  # the samples' registry, on purpose: prod takes one built from a sources file
    artifacts_script.main(argv, session=session)
    sceptre(["launch", "-y", group], cwd=work_dir, namespace=namespace, endpoint=endpoint, extra_vars=shared)
    cfn = session.client("cloudformation")
    ours = [
        s["StackName"]
        for s in cfn.describe_stacks()["Stacks"]
        if s["StackName"].startswith(f"bridge-downstream-{group}-") or s["StackName"].startswith(f"{namespace}-")
    ]
    # shared stacks first: bucket notifications before the subscriptions, so the
    # s3:TestEvent S3 sends on configuration does not reach the new queue
    ordered = sorted(ours, key=lambda n: (not n.startswith("bridge-downstream-"), n))
    harness = Harness(session=session)
    report = harness.emulate_stacks(ordered)
    disable_event_source_mappings(session=session)
    deployment = Deployment(endpoint, group, namespace, session, ordered, time.monotonic() - started)
    deployment.report = report  # type: ignore[attr-defined]
    return deployment


def dump_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


@contextmanager
def emulated_deployment(
    work_dir: Path,
    group: str = "develop",
    namespace: str = "e2e",
    registry: Path | None = None,
    extra_vars: dict[str, str] | None = None,
):
    """Start a moto server, :func:`launch` the group on it, and restore the
    environment (AWS_ENDPOINT_URL) afterwards."""
    require_sceptre()
    from aws_emulator import moto_server

    saved = os.environ.get("AWS_ENDPOINT_URL")
    with moto_server() as endpoint:
        try:
            yield launch(endpoint, group, namespace, work_dir, registry=registry, extra_vars=extra_vars)
        finally:
            if saved is None:
                os.environ.pop("AWS_ENDPOINT_URL", None)
            else:
                os.environ["AWS_ENDPOINT_URL"] = saved
