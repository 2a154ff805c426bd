"""Released artifacts cannot be swapped, the Lambda bundle is named by its
hash, the Glue environment is exactly Pipfile.lock, and pipelines pin job
versions (artifacts.py on moto S3; templates/pipeline.j2 rendered with Jinja)."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
import zipfile
from pathlib import Path

import boto3
import jinja2
import pytest
import yaml
from moto import mock_aws

from project_paths import PROJECT_ROOT


def load_artifacts():
    path = PROJECT_ROOT / "src" / "scripts" / "manage_artifacts" / "artifacts.py"
    spec = importlib.util.spec_from_file_location("manage_artifacts_versions", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


artifacts = load_artifacts()
BUCKET = "art-bucket"


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def files(tmp_path: Path, **contents: str) -> list:
    out = []
    for name, text in contents.items():
        path = tmp_path / name
        path.write_text(text)
        out.append(artifacts.Artifact(f"glue/jobs/{name}.py", path))
    return out


# ------------------------------------------------------------------ releases


@pytest.mark.parametrize(
    ("ref", "released"),
    [("v0.2", True), ("v1", True), ("v1.2.3", True), ("main", False), ("v0.2-rc", False), ("feat-v1", False)],
)
def test_released_refs_are_recognised(ref, released):
    assert artifacts.is_release(ref) is released


def test_a_release_uploads_once_and_an_identical_upload_changes_nothing(s3, tmp_path):
    first = artifacts.upload(s3, BUCKET, "v0.2", files(tmp_path, a="one", b="two"))
    assert sorted(first.uploaded) == ["glue/jobs/a.py", "glue/jobs/b.py"]
    again = artifacts.upload(s3, BUCKET, "v0.2", files(tmp_path, a="one", b="two"))
    assert again.uploaded == [] and sorted(again.unchanged) == ["glue/jobs/a.py", "glue/jobs/b.py"]


@pytest.mark.parametrize(
    "second",
    [{"a": "changed", "b": "two"}, {"a": "one"}, {"a": "one", "b": "two", "c": "new"}],
    ids=["changed", "removed", "added"],
)
def test_a_release_refuses_any_change(s3, tmp_path, second):
    artifacts.upload(s3, BUCKET, "v0.2", files(tmp_path, a="one", b="two"))
    with pytest.raises(artifacts.ReleaseImmutable, match="released version"):
        artifacts.upload(s3, BUCKET, "v0.2", files(tmp_path, **second))
    body = s3.get_object(Bucket=BUCKET, Key="BridgeDownstream/v0.2/glue/jobs/a.py")["Body"].read()
    assert body == b"one"
    assert len(s3.list_objects_v2(Bucket=BUCKET, Prefix="BridgeDownstream/v0.2/")["Contents"]) == 2


def test_a_branch_ref_is_still_overwritten(s3, tmp_path):
    artifacts.upload(s3, BUCKET, "feat-x", files(tmp_path, a="one"))
    report = artifacts.upload(s3, BUCKET, "feat-x", files(tmp_path, a="changed"))
    assert report.uploaded == ["glue/jobs/a.py"]


def test_removing_a_release_needs_force(s3, tmp_path):
    artifacts.upload(s3, BUCKET, "v0.2", files(tmp_path, a="one"))
    with pytest.raises(SystemExit, match="protected"):
        artifacts.main(
            ["--remove", "--ref", "v0.2", "--bucket", BUCKET], session=boto3.session.Session(region_name="us-east-1")
        )
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="BridgeDownstream/v0.2/")["KeyCount"] == 1


# ------------------------------------------------------------------ prod pins


def test_unreleased_pipelines_names_every_unpinned_pipeline_and_group():
    config = {
        "pipelines": [
            {
                "id": "pinned",
                "job_version": "v0.2",
                "dataset_groups": [{"name": "a"}, {"name": "b", "job_version": "v0.1"}],
            },
            {"id": "branch", "job_version": "main", "dataset_groups": [{"name": "a", "job_version": "v0.3"}]},
            {"id": "none", "dataset_groups": [{"name": "a"}]},
        ]
    }
    assert artifacts.unreleased_pipelines(config) == ["branch", "none/a", "none"]


def test_prod_upload_refuses_unpinned_pipelines(tmp_path):
    (tmp_path / "config" / "prod").mkdir(parents=True)
    (tmp_path / "config" / "prod" / "config.yaml").write_text(
        yaml.safe_dump({"pipelines": [{"id": "p", "dataset_groups": [{"name": "g"}]}]})
    )
    args = artifacts.parse_args(["--upload", "--ref", "main", "--stack-group", "prod", "--project-root", str(tmp_path)])
    with pytest.raises(SystemExit, match="released job_version"):
        artifacts.check_prod_pins(args)
    pinned = {"pipelines": [{"id": "p", "job_version": "v0.2", "dataset_groups": [{"name": "g"}]}]}
    (tmp_path / "config" / "prod" / "config.yaml").write_text(yaml.safe_dump(pinned))
    artifacts.check_prod_pins(args)  # accepted


# ------------------------------------------------------------------ Glue environment


def locked() -> dict[str, dict]:
    lock = json.loads((PROJECT_ROOT / "Pipfile.lock").read_text())["default"]
    return {artifacts._normalised_name(name): entry for name, entry in lock.items()}


def parsed_requirements() -> dict[str, tuple[str, list[str]]]:
    out = {}
    for line in artifacts.glue_requirements(PROJECT_ROOT).splitlines():
        if not line or line.startswith("#"):
            continue
        pin, *hashes = line.split()
        name, version = pin.split("==")
        out[name] = (version, [h.removeprefix("--hash=") for h in hashes])
    return out


def test_glue_requirements_are_exactly_the_locked_versions_and_hashes():
    lock = locked()
    requirements = parsed_requirements()
    assert requirements, "no runtime packages generated"
    for name, (version, hashes) in requirements.items():
        assert "==" + version == lock[name]["version"], name
        assert hashes == lock[name]["hashes"], name


def test_glue_requirements_hold_the_wheels_imports_and_not_what_glue_provides():
    requirements = parsed_requirements()
    for needed in ("jsonschema-rs", "orjson", "pyarrow", "pyyaml", "jsonschema", "referencing", "synapseclient"):
        assert needed in requirements, needed
    assert not set(requirements) & artifacts.GLUE_PROVIDED
    assert "pytest" not in requirements and "bridge-downstream" not in requirements


def test_the_environment_bundles_the_core_wheel_and_only_locked_wheels(tmp_path):
    core = tmp_path / "bridge_downstream-0.1.0-py3-none-any.whl"
    core.write_bytes(b"core")
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    version = locked()["orjson"]["version"].removeprefix("==")
    (wheelhouse / f"orjson-{version}-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"o")
    (wheelhouse / "orjson-0.0.1-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"stale")
    requirements = artifacts.glue_requirements(PROJECT_ROOT)
    bundle = artifacts.build_glue_environment(core, requirements, wheelhouse, tmp_path / "out")
    members = zipfile.ZipFile(bundle).namelist()
    assert sorted(members) == sorted(
        [core.name, f"orjson-{version}-cp311-cp311-manylinux_2_17_x86_64.whl", "requirements.txt"]
    )
    missing = artifacts.missing_wheels(requirements, wheelhouse)
    assert f"orjson=={version}" not in missing and len(missing) == len(parsed_requirements()) - 1


def test_an_incomplete_environment_is_refused_for_releases_and_allowed_for_branches(tmp_path, caplog):
    offline = ["--no-download", "--wheelhouse", str(tmp_path / "empty"), "--bucket", BUCKET]
    with pytest.raises(SystemExit, match="locked wheels"):
        artifacts.prepare_wheelhouse(artifacts.parse_args(["--upload", "--ref", "v0.2", *offline]))
    artifacts.prepare_wheelhouse(artifacts.parse_args(["--upload", "--ref", "feat-x", *offline]))
    assert "jobs will not start" in caplog.text


# ------------------------------------------------------------------ pipeline.j2


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags kept as {tag: value}."""


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix: value}


CfnLoader.add_multi_constructor("!", _tagged)


def render_pipeline(pipeline: dict) -> dict:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PROJECT_ROOT / "templates"), undefined=jinja2.StrictUndefined
    )
    text = environment.get_template("pipeline.j2").render(
        sceptre_user_data={"package_version": "0.1.0", "pipeline": pipeline}
    )
    return yaml.load(text, Loader=CfnLoader)


def develop_pipeline(pipeline_id: str) -> dict:
    config = yaml.safe_load((PROJECT_ROOT / "config" / "develop" / "config.yaml").read_text())
    return next(p for p in config["pipelines"] if p["id"] == pipeline_id)


def jobs(template: dict) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == "AWS::Glue::Job"}


def test_jobs_install_the_pinned_environment_offline_from_their_ref():
    for props in jobs(render_pipeline(develop_pipeline("mtb-example"))).values():
        arguments = props["DefaultArguments"]
        assert arguments["--additional-python-modules"] == {
            "Sub": "s3://${ArtifactBucketName}/BridgeDownstream/${ArtifactRef}/glue/python/glue-environment.zip"
        }
        assert arguments["--python-modules-installer-option"] == "--no-index"


def test_a_pinned_pipeline_and_a_pinned_group_run_their_released_version():
    pipeline = develop_pipeline("recover-pilot")
    pipeline["job_version"] = "v0.2"
    pipeline["dataset_groups"][0]["job_version"] = "v0.1"
    rendered = jobs(render_pipeline(pipeline))
    ingest = rendered["S3ToJsonJob"]
    assert ingest["Command"]["ScriptLocation"] == {
        "Sub": "s3://${ArtifactBucketName}/BridgeDownstream/v0.2/glue/jobs/s3_to_json.py"
    }
    assert ingest["DefaultArguments"]["--registry-uri"] == {
        "Sub": "s3://${ArtifactBucketName}/BridgeDownstream/v0.2/registry"
    }
    first, second = (f"JsonToParquet{g}Job" for g in ("FitbitIntraday", "Standard"))
    assert rendered[first]["Command"]["ScriptLocation"]["Sub"].startswith(
        "s3://${ArtifactBucketName}/BridgeDownstream/v0.1/"
    )
    assert rendered[first]["DefaultArguments"]["--additional-python-modules"]["Sub"].endswith(
        "/BridgeDownstream/v0.1/glue/python/glue-environment.zip"
    )
    assert "/BridgeDownstream/v0.2/" in rendered[second]["Command"]["ScriptLocation"]["Sub"]


def test_the_wheel_download_asks_pip_for_glues_platform_with_hashes_and_no_resolution(tmp_path, monkeypatch):
    calls = []

    class Done:
        returncode, stderr = 0, ""

    monkeypatch.setattr(artifacts.subprocess, "run", lambda command, **kwargs: calls.append(command) or Done())
    assert artifacts.download_glue_wheels(tmp_path / "requirements.txt", tmp_path / "wheels") is True
    (command,) = calls
    pairs = set(itertools.pairwise(command))
    for flag in ("--no-deps", "--only-binary=:all:", "--require-hashes"):
        assert flag in command
    assert {("--python-version", "3.11"), ("--abi", "cp311"), ("--platform", "manylinux2014_x86_64")} <= pairs
    assert ("-r", str(tmp_path / "requirements.txt")) in pairs and ("-d", str(tmp_path / "wheels")) in pairs
