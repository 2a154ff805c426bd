"""sweep_namespaces.py against moto (in-process): which namespaces the daily
sweep would remove -- branch namespaces whose branch is gone, found by their
stacks, artifact refs or data prefixes -- and never the default namespace,
main's or released artifacts, or a namespace whose branch still exists."""

from __future__ import annotations

import json
import sys

import boto3
import pytest
from moto import mock_aws

from project_paths import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "src" / "scripts" / "manage_artifacts"))
import sweep_namespaces

BUCKETS_TEMPLATE = {
    "Resources": {
        "A": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "art-bucket"}},
        "I": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "int-bucket"}},
        "P": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "pq-bucket"}},
    },
    "Outputs": {
        "ArtifactBucketName": {"Value": {"Ref": "A"}},
        "IntermediateBucketName": {"Value": {"Ref": "I"}},
        "ParquetBucketName": {"Value": {"Ref": "P"}},
    },
}

LIVE_BRANCH, GONE_BRANCH = "feature/live", "feature/gone"


def launch_namespace(cfn, namespace: str, branch: str) -> None:
    """Two stacks of a namespace, tagged as config/develop/namespaced/config.yaml tags them."""
    for stack in ("queues", "glue-role"):
        name = f"{namespace}-{stack}"
        template = {"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": name}}}}
        tags = [{"Key": "Namespace", "Value": namespace}, {"Key": "Branch", "Value": branch}]
        cfn.create_stack(StackName=name, TemplateBody=json.dumps(template), Tags=tags)


@pytest.fixture
def account(monkeypatch, tmp_path):
    """The develop account: the default namespace, a live and a gone branch's
    stacks, and leftovers of other gone branches in the buckets only."""
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        cfn, s3 = session.client("cloudformation"), session.client("s3")
        cfn.create_stack(StackName="bridge-downstream-develop-buckets", TemplateBody=json.dumps(BUCKETS_TEMPLATE))
        live, gone = sweep_namespaces.namespace_of(LIVE_BRANCH), sweep_namespaces.namespace_of(GONE_BRANCH)
        launch_namespace(cfn, "bridge-downstream", "main")
        launch_namespace(cfn, live, LIVE_BRANCH)
        launch_namespace(cfn, gone, GONE_BRANCH)
        # a namespace made by an older naming rule, tagged with a branch that still exists
        launch_namespace(cfn, "br-old-rule-0000000", LIVE_BRANCH)
        for ref in ("main", "v0.2", "bridge-downstream", live, gone, "br-only-artifacts-1111111"):
            s3.put_object(Bucket="art-bucket", Key=f"BridgeDownstream/{ref}/lambda/sqs_to_glue.sha256", Body=b"x")
        for bucket, key in [
            ("int-bucket", "bridge-downstream/mobile-toolbox/example/json/a.ndjson"),
            ("int-bucket", f"{live}/mobile-toolbox/example/json/a.ndjson"),
            ("int-bucket", "br-only-data-2222222/mobile-toolbox/example/json/a.ndjson"),
            ("pq-bucket", "tmp/br-only-tmp-3333333/part-0.parquet"),
            ("pq-bucket", "tmp/bridge-downstream/part-0.parquet"),
        ]:
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        yield session, tmp_path, live, gone


def sweep(capsys, session, branches_file, branches: list[str]) -> list[str]:
    branches_file.write_text("\n".join(branches) + "\n")
    assert sweep_namespaces.main(["--branches", str(branches_file), "--format", "json"], session=session) == 0
    return json.loads(capsys.readouterr().out)


def test_removes_the_namespaces_of_gone_branches_wherever_they_left_something(account, capsys):
    session, tmp_path, live, gone = account
    orphans = sweep(capsys, session, tmp_path / "branches.txt", ["main", LIVE_BRANCH, "develop-x"])
    assert orphans == sorted([gone, "br-only-artifacts-1111111", "br-only-data-2222222", "br-only-tmp-3333333"])
    assert live not in orphans and "br-old-rule-0000000" not in orphans


def test_never_the_default_namespace_main_or_releases_even_when_every_branch_is_gone(account, capsys):
    session, tmp_path, live, gone = account
    orphans = sweep(capsys, session, tmp_path / "branches.txt", ["main"])
    assert {live, gone, "br-old-rule-0000000"} <= set(orphans)
    assert all(o.startswith("br-") for o in orphans)
    assert not {"bridge-downstream", "main", "v0.2", "tmp"} & set(orphans)


@pytest.mark.parametrize("branches", [[], ["feature/live"]], ids=["empty", "without-main"])
def test_an_incomplete_branch_list_is_refused(account, capsys, branches):
    session, tmp_path, _, _ = account
    with pytest.raises(SystemExit, match="lacks 'main'"):
        sweep(capsys, session, tmp_path / "branches.txt", branches)


def test_the_namespace_rule_is_namespace_sh():
    assert sweep_namespaces.namespace_of("main") == "bridge-downstream"
    namespace = sweep_namespaces.namespace_of(GONE_BRANCH)
    assert namespace.startswith(sweep_namespaces.BRANCH_NAMESPACE_PREFIX) and len(namespace) <= 24
