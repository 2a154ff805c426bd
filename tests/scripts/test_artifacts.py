"""artifacts.py against moto S3 (in-process): layout, idempotence, pruning,
bucket from stack outputs, list and remove (artifacts and data prefixes)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import zipfile

import boto3
import pytest
from moto import mock_aws

from project_paths import PROJECT_ROOT

ROOT = PROJECT_ROOT


def load_artifacts():
    path = ROOT / "src" / "scripts" / "manage_artifacts" / "artifacts.py"
    spec = importlib.util.spec_from_file_location("manage_artifacts", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


artifacts = load_artifacts()

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


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build once (the wheel build dominates the time)."""
    build_dir = tmp_path_factory.mktemp("build")
    return artifacts.collect_artifacts(ROOT, build_dir, None)


@pytest.fixture
def registry(tmp_path):
    reg = tmp_path / "registry"
    (reg / "schemas").mkdir(parents=True)
    (reg / "registry.json").write_text(json.dumps({"version": "test"}))
    (reg / "schemas" / "0.json").write_text("{}")
    return reg


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        cfn = session.client("cloudformation")
        cfn.create_stack(StackName="bridge-downstream-develop-buckets", TemplateBody=json.dumps(BUCKETS_TEMPLATE))
        yield session


def keys(session, bucket, prefix=""):
    s3 = session.client("s3")
    return sorted(
        o["Key"]
        for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in p.get("Contents", [])
    )


def test_layout_of_collected_artifacts(built):
    names = {a.key for a in built}
    version = artifacts.package_version(ROOT)
    assert f"glue/python/bridge_downstream-{version}-py3-none-any.whl" in names
    assert "glue/python/requirements.txt" in names and "glue/python/glue-environment.zip" in names
    assert "templates/pipeline.j2" in names and "templates/buckets.yaml" in names
    assert any(n.startswith("glue/jobs/") for n in names)
    bundle = next(a.path for a in built if a.key.startswith("lambda/sqs_to_glue-") and a.key.endswith(".zip"))
    assert f"lambda/sqs_to_glue-{artifacts.sha256_of(bundle)}.zip" in names
    digest = next(a.path for a in built if a.key == "lambda/sqs_to_glue.sha256")
    assert digest.read_text() == artifacts.sha256_of(bundle)
    assert zipfile.ZipFile(bundle).namelist() == ["app.py"]
    wheel = next(a.path for a in built if a.key.endswith(".whl"))
    members = zipfile.ZipFile(wheel).namelist()
    assert "bridge_downstream/__init__.py" in members
    assert "bridge_downstream_adapters/s3.py" in members


def test_wheel_and_bundle_builds_are_reproducible(built, tmp_path):
    again = {a.key: a.path for a in artifacts.collect_artifacts(ROOT, tmp_path, None)}
    for artifact in built:
        if artifact.key.endswith((".whl", ".zip")):
            assert artifacts.sha256_of(artifact.path) == artifacts.sha256_of(again[artifact.key]), artifact.key


def test_upload_is_idempotent_and_prunes(aws, built, registry):
    s3 = aws.client("s3")
    items = list(built)
    reg_items = [
        artifacts.Artifact(f"registry/{p.relative_to(registry).as_posix()}", p)
        for p in sorted(registry.rglob("*"))
        if p.is_file()
    ]
    first = artifacts.upload(s3, "art-bucket", "feat-x", items + reg_items)
    assert len(first.uploaded) == len(items) + 2 and not first.unchanged
    stored = keys(aws, "art-bucket", "BridgeDownstream/feat-x/")
    assert "BridgeDownstream/feat-x/registry/registry.json" in stored
    lambda_key = next(a.key for a in items if a.key.startswith("lambda/sqs_to_glue-"))
    head = s3.head_object(Bucket="art-bucket", Key=f"BridgeDownstream/feat-x/{lambda_key}")
    assert head["Metadata"]["sha256"] and head["ServerSideEncryption"] == "AES256"

    second = artifacts.upload(s3, "art-bucket", "feat-x", items + reg_items)
    assert second.uploaded == [] and len(second.unchanged) == len(items) + 2

    (registry / "schemas" / "0.json").write_text('{"changed": true}')
    third = artifacts.upload(s3, "art-bucket", "feat-x", items + reg_items[:1] + reg_items[1:])
    assert third.uploaded == ["registry/schemas/0.json"]

    fourth = artifacts.upload(s3, "art-bucket", "feat-x", items)  # registry no longer produced
    assert sorted(fourth.deleted) == ["registry/registry.json", "registry/schemas/0.json"]


def offline(tmp_path) -> list[str]:
    """CLI options that keep an upload off the network and out of the working tree."""
    return ["--no-download", "--wheelhouse", str(tmp_path / "wheels"), "--record-dir", str(tmp_path / "record")]


def test_cli_upload_list_remove_with_bucket_from_stack_outputs(aws, registry, capsys, tmp_path):
    s3 = aws.client("s3")
    s3.put_bucket_versioning(Bucket="art-bucket", VersioningConfiguration={"Status": "Enabled"})
    argv = ["--upload", "--ref", "feat-x", "--registry", str(registry), *offline(tmp_path)]
    assert artifacts.main(argv, session=aws) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bucket"] == "art-bucket" and report["prefix"] == "BridgeDownstream/feat-x/"
    artifacts.main(
        ["--upload", "--ref", "other", "--stack-name", "bridge-downstream-develop-buckets", *offline(tmp_path)],
        session=aws,
    )
    capsys.readouterr()

    artifacts.main(["--list"], session=aws)
    assert capsys.readouterr().out.split() == ["feat-x", "other"]
    artifacts.main(["--list", "--ref", "feat-x"], session=aws)
    listed = capsys.readouterr().out.split()
    recorded = (tmp_path / "record" / "feat-x" / "lambda" / "sqs_to_glue.sha256").read_text()
    assert "registry/registry.json" in listed and f"lambda/sqs_to_glue-{recorded}.zip" in listed

    for bucket in ("int-bucket", "pq-bucket"):
        s3.put_object(Bucket=bucket, Key="feat-x/mobile-toolbox/example/json/a.ndjson", Body=b"{}")
        s3.put_object(Bucket=bucket, Key="tmp/feat-x/x", Body=b"{}")
        s3.put_object(Bucket=bucket, Key="feat-xy/keep", Body=b"{}")
    assert artifacts.main(["--remove", "--ref", "feat-x", "--namespace", "feat-x"], session=aws) == 0
    capsys.readouterr()
    assert s3.list_object_versions(Bucket="art-bucket", Prefix="BridgeDownstream/feat-x/").get("Versions") is None
    assert keys(aws, "art-bucket", "BridgeDownstream/other/")
    assert keys(aws, "int-bucket") == ["feat-xy/keep"] and keys(aws, "pq-bucket") == ["feat-xy/keep"]


def test_protected_refs_need_force(aws):
    with pytest.raises(SystemExit):
        artifacts.main(["--remove", "--ref", "main"], session=aws)
    with pytest.raises(SystemExit):
        artifacts.main(["--remove", "--ref", "x", "--namespace", "bridge-downstream"], session=aws)
    with pytest.raises(SystemExit):
        artifacts.main(["--upload", "--ref", "a/b", "--bucket", "art-bucket"], session=aws)


def test_project_code_comes_from_sceptre_config(tmp_path):
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "config.yaml", tmp_path / "config" / "config.yaml")
    assert artifacts.buckets_stack_name("prod", tmp_path) == "bridge-downstream-prod-buckets"
