#!/usr/bin/env python3
"""Upload, list or remove the deployment artifacts of one ref (branch).

    artifacts.py --upload --ref my-branch [--registry build/registry]
    (for --ref main or --stack-group prod, --registry is required and must be built from a sources file)
    artifacts.py --list   --ref my-branch
    artifacts.py --list                       # every ref in the bucket
    artifacts.py --remove --ref my-branch [--namespace my-branch]

Layout under ``s3://<artifact bucket>/BridgeDownstream/<ref>/``::

    glue/jobs/<script>.py                          Glue job scripts (src/glue/jobs)
    glue/python/bridge_downstream-<v>-py3-none-any.whl   core wheel
    glue/python/requirements.txt                   the jobs' runtime packages, pinned and hashed from Pipfile.lock
    glue/python/glue-environment.zip               zip of wheels the jobs install offline (--additional-python-modules):
                                                   the core wheel and the locked wheels for Glue 5.0 (manylinux x86_64, cp311)
    lambda/<name>-<sha256>.zip                     one bundle per src/lambda/<name>, named by its content hash
    lambda/<name>.sha256                           that hash (also written to build/artifacts/<ref>/lambda/ for sceptre)
    templates/...                                  CloudFormation templates as launched
    registry/...                                   the schema registry (--registry DIR)

The bucket is never a constant: ``--bucket``, else the ``ArtifactBucketName``
output of ``--stack-name``, else of the stack group's buckets stack
(``<project_code>-<stack group>-buckets``, project_code from config/config.yaml).

``--upload`` is idempotent: each object carries its sha256 in its metadata and
is written only when it changed; objects under the ref that are no longer
produced are deleted. Wheels and zips are built reproducibly (fixed
timestamps), so an unchanged tree uploads nothing.

Released refs (``v<major>.<minor>...``, e.g. ``--ref v0.2``) are immutable: a
second upload that would add, change or delete anything under the ref is
refused, and ``--remove`` refuses them without ``--force``. Pipelines pin a
released ref with ``job_version`` in config/ (templates/pipeline.j2).

Downloading the locked wheels needs the network, so it happens here, at upload
time, into ``build/glue-wheelhouse`` (a cache); ``--no-download`` skips it. A
ref whose environment lacks a locked wheel is refused for main, prod and
released refs unless ``--force``.

``--remove`` deletes every version of every object under the ref; with
``--namespace`` it also deletes the namespace's data prefixes
(``<namespace>/`` and ``tmp/<namespace>/`` in the intermediate and Parquet
buckets). The default namespace and the ``main`` ref are refused unless
``--force``.

Only boto3 (no AWS CLI); credentials and region come from the environment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("artifacts")

PROJECT_ROOT = Path(__file__).resolve().parents[3]
ARTIFACT_ROOT = "BridgeDownstream"
EXPECTED_JOBS = ("s3_to_json.py", "json_to_parquet.py", "synapse_export.py")
PROTECTED_REFS = frozenset({"main"})
RELEASE_REF = re.compile(r"^v\d+(\.\d+)*$")
# Glue 5.0 ships these (and pins them to its Spark); installing our lock's
# versions over them would change the runtime under Spark.
GLUE_PROVIDED = frozenset(
    {
        "boto3",
        "botocore",
        "s3transfer",
        "jmespath",
        "py4j",
        "pyspark",
        "setuptools",
        "python-dateutil",
        "six",
        "urllib3",
    }
)
# The jobs' import roots beyond the wheel's own dependencies: synapseclient
# reads Bridge's raw bucket (STS) and exports to Synapse.
GLUE_EXTRA_REQUIREMENTS = ("synapseclient",)
# Glue 5.0: Amazon Linux 2023 (glibc 2.34), x86_64, CPython 3.11.
GLUE_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "any")
GLUE_PYTHON = "3.11"
GLUE_ABIS = ("cp311", "abi3", "none")
GLUE_ENVIRONMENT = "glue/python/glue-environment.zip"
PROTECTED_NAMESPACES = frozenset({"bridge-downstream"})
# A Synapse folder id: syn and its number (no leading zero). Ids people write
# in place of a real one are refused too, so a template value never deploys.
SYNAPSE_FOLDER_ID = re.compile(r"^syn[1-9][0-9]*$")
PLACEHOLDER_SYNAPSE_FOLDERS = frozenset(
    {"syn1", "syn123", "syn1234", "syn12345", "syn123456", "syn1234567", "syn12345678", "syn123456789", "syn99999999"}
)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


# ------------------------------------------------------------------ building


def project_code(project_root: Path = PROJECT_ROOT) -> str:
    text = (project_root / "config" / "config.yaml").read_text()
    match = re.search(r"^project_code:\s*['\"]?([A-Za-z0-9-]+)", text, re.MULTILINE)
    if not match:
        raise SystemExit("config/config.yaml has no project_code")
    return match.group(1)


def package_version(project_root: Path = PROJECT_ROOT) -> str:
    import tomllib

    return tomllib.loads((project_root / "pyproject.toml").read_text())["project"]["version"]


def build_wheel(project_root: Path, out_dir: Path) -> Path:
    """Build the core wheel offline with setuptools' PEP 517 backend, in a copy
    of the sources (nothing is written into the working tree)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bd-wheel-") as tmp:
        src = Path(tmp) / "src"
        shutil.copy2(project_root / "pyproject.toml", Path(tmp) / "pyproject.toml")
        readme = project_root / "README.md"
        (Path(tmp) / "README.md").write_text(readme.read_text() if readme.exists() else "")
        for package in sorted((project_root / "src").glob("bridge_downstream*")):
            if package.is_dir() and not package.name.endswith(".egg-info"):
                shutil.copytree(package, src / package.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        env = dict(os.environ, SOURCE_DATE_EPOCH="315532800")
        code = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
        result = subprocess.run(
            [sys.executable, "-c", code, str(out_dir)], cwd=tmp, env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"wheel build failed:\n{result.stdout}\n{result.stderr}")
        name = result.stdout.strip().splitlines()[-1]
    return _normalise_zip(out_dir / name)


def _normalise_zip(path: Path) -> Path:
    """Rewrite a zip with sorted members and fixed timestamps (reproducible)."""
    with zipfile.ZipFile(path) as source:
        members = sorted(source.infolist(), key=lambda info: info.filename)
        payload = [(info.filename, source.read(info.filename), info.external_attr) for info in members]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data, attr in payload:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.external_attr = attr or (0o644 << 16)
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, data)
    return path


def build_lambda_bundle(function_dir: Path, out_dir: Path) -> Path:
    """``<name>.zip`` with the function's files and its requirements."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{function_dir.name}.zip"
    with tempfile.TemporaryDirectory(prefix="bd-lambda-") as tmp:
        staging = Path(tmp)
        for path in sorted(function_dir.rglob("*")):
            rel = path.relative_to(function_dir)
            if path.is_dir() or rel.parts[0] in ("events", "__pycache__", ".aws-sam") or path.suffix == ".pyc":
                continue
            if rel.name in ("template.yaml", "requirements.txt"):
                continue
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, staging / rel)
        requirements = function_dir / "requirements.txt"
        if requirements.exists() and any(
            line.strip() and not line.strip().startswith("#") for line in requirements.read_text().splitlines()
        ):
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "-r", str(requirements), "-t", str(staging)],
                check=True,
            )
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in sorted(p for p in staging.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
                info = zipfile.ZipInfo(path.relative_to(staging).as_posix(), date_time=ZIP_DATE)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                bundle.writestr(info, path.read_bytes())
    return target


def is_release(ref: str) -> bool:
    return bool(RELEASE_REF.match(ref))


def _normalised_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure(roots: Iterable[str]) -> set[str]:
    """The packages ``roots`` need on Glue's Linux/cp311, by the installed
    distributions' metadata (the venv installed from Pipfile.lock)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    environment = {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11", "extra": ""}
    seen: set[str] = set()
    pending = [_normalised_name(Requirement(root).name) for root in roots]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                pending.append(_normalised_name(requirement.name))
    return seen


def glue_requirements(project_root: Path = PROJECT_ROOT) -> str:
    """requirements.txt of the jobs' runtime packages: exactly Pipfile.lock's
    versions and hashes, without what Glue already provides."""
    import tomllib

    lock = {
        _normalised_name(k): v for k, v in json.loads((project_root / "Pipfile.lock").read_text())["default"].items()
    }
    roots = list(tomllib.loads((project_root / "pyproject.toml").read_text())["project"]["dependencies"])
    wanted = runtime_closure([*roots, *GLUE_EXTRA_REQUIREMENTS]) - GLUE_PROVIDED
    lines = ["# generated by artifacts.py from Pipfile.lock: the Glue jobs' runtime packages"]
    for name in sorted(wanted):
        entry = lock.get(name)
        if entry is None or not entry.get("version"):
            continue  # not in the lock: a dependency of a package Glue provides, or an unused extra
        hashes = " ".join(f"--hash={h}" for h in entry.get("hashes", []))
        lines.append(f"{name}{entry['version']} {hashes}".rstrip())
    return "\n".join(lines) + "\n"


def download_glue_wheels(requirements: Path, wheelhouse: Path) -> bool:
    """Fetch the locked wheels for Glue's platform (network); False when pip could not."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--retries", "0", "--timeout", "15"]
    command += ["--no-deps", "--only-binary=:all:", "--require-hashes", "--implementation", "cp"]
    command += ["--python-version", GLUE_PYTHON]
    for abi in GLUE_ABIS:
        command += ["--abi", abi]
    for platform in GLUE_PLATFORMS:
        command += ["--platform", platform]
    command += ["-r", str(requirements), "-d", str(wheelhouse)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        log.warning("could not download the Glue wheels: %s", result.stderr.strip()[-500:])
    return result.returncode == 0


def missing_wheels(requirements_text: str, wheelhouse: Path) -> list[str]:
    have = {_normalised_name(p.name.split("-")[0]) + "==" + p.name.split("-")[1] for p in wheelhouse.glob("*.whl")}
    pins = [line.split()[0] for line in requirements_text.splitlines() if line and not line.startswith("#")]
    return [pin for pin in pins if _normalised_name(pin.split("==")[0]) + "==" + pin.split("==")[1] not in have]


def build_glue_environment(core_wheel: Path, requirements_text: str, wheelhouse: Path, out_dir: Path) -> Path:
    """The zip of wheels the jobs install: the core wheel, the locked wheels present in the wheelhouse."""
    pins = {line.split()[0] for line in requirements_text.splitlines() if line and not line.startswith("#")}
    target = out_dir / Path(GLUE_ENVIRONMENT).name
    out_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as bundle:
        wheels = [core_wheel] + [
            p
            for p in sorted(wheelhouse.glob("*.whl"))
            if f"{_normalised_name(p.name.split('-')[0])}=={p.name.split('-')[1]}" in pins
        ]
        for wheel in wheels:
            info = zipfile.ZipInfo(wheel.name, date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            bundle.writestr(info, wheel.read_bytes())
        info = zipfile.ZipInfo("requirements.txt", date_time=ZIP_DATE)
        info.external_attr = 0o644 << 16
        bundle.writestr(info, requirements_text)
    return target


@dataclass
class Artifact:
    key: str  # relative to the ref prefix
    path: Path


def collect_artifacts(
    project_root: Path,
    build_dir: Path,
    registry: Path | None = None,
    wheelhouse: Path | None = None,
) -> list[Artifact]:
    """Everything one ref consists of, built into ``build_dir``; the Glue
    environment takes the locked wheels found in ``wheelhouse``."""
    artifacts: list[Artifact] = []
    jobs_dir = project_root / "src" / "glue" / "jobs"
    for script in sorted(jobs_dir.glob("*.py")):
        artifacts.append(Artifact(f"glue/jobs/{script.name}", script))
    missing = [name for name in EXPECTED_JOBS if not (jobs_dir / name).exists()]
    if missing:
        log.warning("job scripts not in the tree yet, not uploaded: %s", ", ".join(missing))
    wheel = build_wheel(project_root, build_dir / "wheel")
    artifacts.append(Artifact(f"glue/python/{wheel.name}", wheel))
    requirements = build_dir / "glue" / "requirements.txt"
    requirements.parent.mkdir(parents=True, exist_ok=True)
    requirements.write_text(glue_requirements(project_root))
    artifacts.append(Artifact("glue/python/requirements.txt", requirements))
    environment = build_glue_environment(
        wheel, requirements.read_text(), wheelhouse or build_dir / "no-wheelhouse", build_dir / "glue"
    )
    artifacts.append(Artifact(GLUE_ENVIRONMENT, environment))
    for function_dir in sorted((project_root / "src" / "lambda").iterdir()):
        if (function_dir / "app.py").exists():
            bundle = build_lambda_bundle(function_dir, build_dir / "lambda")
            digest = sha256_of(bundle)
            digest_file = build_dir / "lambda" / f"{function_dir.name}.sha256"
            digest_file.write_text(digest)
            artifacts.append(Artifact(f"lambda/{function_dir.name}-{digest}.zip", bundle))
            artifacts.append(Artifact(f"lambda/{digest_file.name}", digest_file))
    templates = project_root / "templates"
    for path in sorted(p for p in templates.rglob("*") if p.is_file()):
        artifacts.append(Artifact(f"templates/{path.relative_to(templates).as_posix()}", path))
    if registry is not None:
        if not (registry / "registry.json").exists():
            raise SystemExit(f"{registry} is not a schema registry (no registry.json)")
        for path in sorted(p for p in registry.rglob("*") if p.is_file()):
            artifacts.append(Artifact(f"registry/{path.relative_to(registry).as_posix()}", path))
    return artifacts


# ------------------------------------------------------------------ S3


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ref_prefix(ref: str) -> str:
    if not ref or "/" in ref.strip("/") or ref in (".", ".."):
        raise SystemExit(f"invalid ref {ref!r}: one path segment, e.g. the branch namespace")
    return f"{ARTIFACT_ROOT}/{ref}/"


def list_keys(s3, bucket: str, prefix: str) -> Iterator[dict]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def delete_all_versions(s3, bucket: str, prefix: str) -> int:
    """Delete every version and delete marker under ``prefix``."""
    count = 0
    batch: list[dict] = []
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
            batch.append({"Key": item["Key"], "VersionId": item["VersionId"]})
            if len(batch) == 1000:
                count += _delete_batch(s3, bucket, batch)
                batch = []
    if batch:
        count += _delete_batch(s3, bucket, batch)
    return count


def _delete_batch(s3, bucket: str, objects: list[dict]) -> int:
    response = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    errors = response.get("Errors", [])
    if errors:
        raise RuntimeError(f"could not delete {len(errors)} objects, e.g. {errors[0]}")
    return len(objects)


@dataclass
class UploadReport:
    bucket: str
    prefix: str
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "uploaded": self.uploaded,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
        }


class ReleaseImmutable(SystemExit):
    """An upload that would change a released ref."""


def check_release_unchanged(s3, bucket: str, prefix: str, artifacts: list[Artifact], existing: set[str]) -> None:
    """A released ref is written once: an upload may only find it absent or identical."""
    if not existing:
        return
    wanted = {prefix + artifact.key: sha256_of(artifact.path) for artifact in artifacts}
    changed = sorted(key for key in wanted if key not in existing)
    changed += sorted(key for key in existing if key not in wanted)
    changed += sorted(
        key
        for key, digest in wanted.items()
        if key in existing and s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256") != digest
    )
    if changed:
        raise ReleaseImmutable(
            f"{prefix} is a released version and already uploaded; refusing to change {len(changed)} objects "
            f"(e.g. {changed[0]}): release a new version instead"
        )


def upload(s3, bucket: str, ref: str, artifacts: Iterable[Artifact], prune: bool = True) -> UploadReport:
    prefix = ref_prefix(ref)
    report = UploadReport(bucket, prefix)
    existing = {item["Key"] for item in list_keys(s3, bucket, prefix)}
    artifacts = list(artifacts)
    if is_release(ref):
        check_release_unchanged(s3, bucket, prefix, artifacts, existing)
    wanted = set()
    for artifact in artifacts:
        key = prefix + artifact.key
        wanted.add(key)
        digest = sha256_of(artifact.path)
        if key in existing:
            head = s3.head_object(Bucket=bucket, Key=key)
            if head.get("Metadata", {}).get("sha256") == digest:
                report.unchanged.append(artifact.key)
                continue
        s3.upload_file(
            str(artifact.path),
            bucket,
            key,
            ExtraArgs={"Metadata": {"sha256": digest}, "ServerSideEncryption": "AES256"},
        )
        report.uploaded.append(artifact.key)
    if prune:
        for key in sorted(existing - wanted):
            s3.delete_object(Bucket=bucket, Key=key)
            report.deleted.append(key[len(prefix) :])
    return report


def list_ref(s3, bucket: str, ref: str | None) -> list[str]:
    if ref is None:
        response_refs = set()
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"{ARTIFACT_ROOT}/", Delimiter="/"
        ):
            for common in page.get("CommonPrefixes", []):
                response_refs.add(common["Prefix"][len(ARTIFACT_ROOT) + 1 :].strip("/"))
        return sorted(response_refs)
    prefix = ref_prefix(ref)
    return [item["Key"][len(prefix) :] for item in list_keys(s3, bucket, prefix)]


# ------------------------------------------------------------------ stacks


def stack_outputs(cloudformation, stack_name: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def buckets_stack_name(stack_group: str, project_root: Path = PROJECT_ROOT) -> str:
    return f"{project_code(project_root)}-{stack_group}-buckets"


def resolve_buckets(session, args) -> dict[str, str]:
    if args.bucket:
        return {"ArtifactBucketName": args.bucket}
    name = args.stack_name or buckets_stack_name(args.stack_group)
    outputs = stack_outputs(session.client("cloudformation"), name)
    if "ArtifactBucketName" not in outputs:
        raise SystemExit(f"stack {name} has no ArtifactBucketName output")
    return outputs


# ------------------------------------------------------------------ CLI


def check_deployed_registry(args) -> None:
    """``main`` and prod run on the real registry: one built from a sources
    file (``registry build --sources registry-sources/mtb.yaml``), never the
    samples or a registry pieced together by hand, unless --force."""
    if args.force or (args.ref not in PROTECTED_REFS and args.stack_group != "prod"):
        return
    if args.registry is None:
        raise SystemExit(
            f"--ref {args.ref} / --stack-group {args.stack_group} needs --registry (a registry built --sources)"
        )
    index = (
        json.loads((args.registry / "registry.json").read_text()) if (args.registry / "registry.json").exists() else {}
    )
    if not index.get("sources"):
        raise SystemExit(
            f"{args.registry} was not built from a sources file: for {args.ref} / {args.stack_group} build it with "
            "`bridge-downstream registry build --sources registry-sources/mtb.yaml --root DIR` (or pass --force)"
        )


def unreleased_pipelines(group_config: dict) -> list[str]:
    """Pipelines and dataset groups of a stack group config that do not pin a released job version."""
    found = []
    for pipeline in group_config.get("pipelines") or []:
        pinned = pipeline.get("job_version")
        for group in pipeline.get("dataset_groups") or []:
            version = group.get("job_version") or pinned
            if not (isinstance(version, str) and is_release(version)):
                found.append(f"{pipeline.get('id')}/{group.get('name')}")
        if not (isinstance(pinned, str) and is_release(pinned)):
            found.append(str(pipeline.get("id")))
    return found


def check_prod_pins(args) -> None:
    """prod runs released versions only: every prod pipeline pins ``job_version: v...``."""
    if args.stack_group != "prod" or args.force:
        return
    import yaml

    config = yaml.safe_load((args.project_root / "config" / "prod" / "config.yaml").read_text())
    unpinned = unreleased_pipelines(config)
    if unpinned:
        raise SystemExit(f"prod pipelines must pin a released job_version (v...): {', '.join(unpinned)}")


def synapse_folder_problems(group_config: dict) -> list[str]:
    """Pipelines of a stack group config whose ``synapse_folder_id`` is not a
    real Synapse folder id; a pipeline without one has no export (omit the key)."""
    problems = []
    for pipeline in group_config.get("pipelines") or []:
        if "synapse_folder_id" not in pipeline:
            continue
        folder = pipeline["synapse_folder_id"]
        if not (isinstance(folder, str) and SYNAPSE_FOLDER_ID.match(folder)) or folder in PLACEHOLDER_SYNAPSE_FOLDERS:
            problems.append(f"{pipeline.get('id')}: synapse_folder_id {folder!r}")
    return problems


def check_synapse_folders(args) -> None:
    """Every upload precedes a launch: a placeholder Synapse folder never deploys (no --force)."""
    import yaml

    path = args.project_root / "config" / args.stack_group / "config.yaml"
    if not path.exists():
        return
    problems = synapse_folder_problems(yaml.safe_load(path.read_text()))
    if problems:
        raise SystemExit(
            f"{path}: not a Synapse folder id (syn<digits>, no placeholder; omit the key for no export): "
            + "; ".join(problems)
        )


def prepare_wheelhouse(args) -> None:
    """Fill the wheelhouse with the locked wheels (network); main, prod and
    released refs run only a complete environment."""
    requirements_text = glue_requirements(args.project_root)
    missing = missing_wheels(requirements_text, args.wheelhouse)
    if missing and not args.no_download:
        with tempfile.TemporaryDirectory(prefix="bd-requirements-") as tmp:
            requirements = Path(tmp) / "requirements.txt"
            requirements.write_text(requirements_text)
            download_glue_wheels(requirements, args.wheelhouse)
        missing = missing_wheels(requirements_text, args.wheelhouse)
    if not missing:
        return
    deployed = args.ref in PROTECTED_REFS or is_release(args.ref) or args.stack_group == "prod"
    if deployed and not args.force:
        raise SystemExit(
            f"the Glue environment lacks {len(missing)} locked wheels (e.g. {missing[0]}); refusing {args.ref}"
        )
    log.warning(
        "the Glue environment lacks %d locked wheels (e.g. %s): its jobs will not start", len(missing), missing[0]
    )


def record_lambda_hashes(artifacts: Iterable[Artifact], out_dir: Path) -> None:
    """``<out_dir>/lambda/<name>.sha256``: the stack configs read the uploaded bundle's hash from here."""
    for artifact in artifacts:
        if artifact.key.startswith("lambda/") and artifact.key.endswith(".sha256"):
            target = out_dir / artifact.key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(artifact.path.read_text())


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--upload", action="store_true", help="build and upload the ref's artifacts")
    action.add_argument("--remove", action="store_true", help="delete the ref's artifacts (all versions)")
    action.add_argument("--list", action="store_true", help="list the ref's artifacts, or every ref")
    parser.add_argument("--ref", help="artifact ref: the branch namespace (one path segment)")
    parser.add_argument(
        "--registry", type=Path, help="schema registry directory to upload (bridge-downstream registry build)"
    )
    parser.add_argument("--bucket", help="artifact bucket (default: from stack outputs)")
    parser.add_argument("--stack-name", help="stack whose outputs name the buckets")
    parser.add_argument(
        "--stack-group", default="develop", help="sceptre stack group of the buckets stack (default develop)"
    )
    parser.add_argument("--namespace", help="with --remove: also delete this namespace's data prefixes")
    parser.add_argument("--no-prune", action="store_true", help="with --upload: keep objects no longer produced")
    parser.add_argument(
        "--wheelhouse",
        type=Path,
        default=PROJECT_ROOT / "build" / "glue-wheelhouse",
        help="cache of the locked wheels for Glue's platform (default build/glue-wheelhouse)",
    )
    parser.add_argument(
        "--no-download", action="store_true", help="with --upload: bundle only the wheels already in --wheelhouse"
    )
    parser.add_argument(
        "--record-dir",
        type=Path,
        default=PROJECT_ROOT / "build" / "artifacts",
        help="where --upload records each Lambda bundle's hash for sceptre (<dir>/<ref>/lambda/<name>.sha256)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="allow --remove of protected refs/namespaces, and --upload to main/prod of a registry built without --sources",
    )
    parser.add_argument("--project-root", type=Path, default=PROJECT_ROOT)
    parser.add_argument("--region", default=None)
    args = parser.parse_args(argv)
    if (args.upload or args.remove) and not args.ref:
        parser.error("--ref is required with --upload and --remove")
    return args


def main(argv=None, session=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    import boto3

    session = session or boto3.session.Session(region_name=args.region)
    outputs = resolve_buckets(session, args)
    bucket = outputs["ArtifactBucketName"]
    s3 = session.client("s3")

    if args.list:
        for line in list_ref(s3, bucket, args.ref):
            print(line)
        return 0

    if args.upload:
        check_deployed_registry(args)
        check_prod_pins(args)
        check_synapse_folders(args)
        prepare_wheelhouse(args)
        with tempfile.TemporaryDirectory(prefix="bd-artifacts-") as build_dir:
            artifacts = collect_artifacts(args.project_root, Path(build_dir), args.registry, args.wheelhouse)
            report = upload(s3, bucket, args.ref, artifacts, prune=not args.no_prune)
            record_lambda_hashes(artifacts, args.record_dir / args.ref)
        print(json.dumps(report.as_dict(), indent=2))
        return 0

    # --remove
    protected = args.ref in PROTECTED_REFS or is_release(args.ref) or (args.namespace or "") in PROTECTED_NAMESPACES
    if protected and not args.force:
        raise SystemExit(f"refusing to remove protected ref/namespace ({args.ref}, {args.namespace}) without --force")
    removed = {"artifacts": delete_all_versions(s3, bucket, ref_prefix(args.ref))}
    if args.namespace:
        if "/" in args.namespace or not args.namespace.strip():
            raise SystemExit(f"invalid namespace {args.namespace!r}")
        if args.bucket and not args.stack_name:
            raise SystemExit("--namespace needs the buckets stack outputs (use --stack-name or --stack-group)")
        for output in ("IntermediateBucketName", "ParquetBucketName"):
            data_bucket = outputs.get(output)
            if not data_bucket:
                continue
            for prefix in (f"{args.namespace}/", f"tmp/{args.namespace}/"):
                removed[f"s3://{data_bucket}/{prefix}"] = delete_all_versions(s3, data_bucket, prefix)
    print(json.dumps({"bucket": bucket, "ref": args.ref, "deleted": removed}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
