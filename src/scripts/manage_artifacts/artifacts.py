#!/usr/bin/env python3
"""Upload, list or remove the deployment artifacts of one ref (branch).

    artifacts.py --upload --ref my-branch [--registry build/registry]
    (for --ref main or --stack-group prod, --registry is required and must be built from a sources file)
    artifacts.py --list   --ref my-branch
    artifacts.py --list                       # every ref in the bucket
    artifacts.py --remove --ref my-branch [--namespace my-branch]

Layout under ``s3://<artifact bucket>/BridgeDownstream/<ref>/``::

    glue/jobs/<script>.py                          Glue job scripts (src/glue/jobs)
    glue/python/bridge_downstream-<v>-py3-none-any.whl   core wheel (--additional-python-modules)
    lambda/<name>.zip                              one bundle per src/lambda/<name>
    templates/...                                  CloudFormation templates as launched
    registry/...                                   the schema registry (--registry DIR)

The bucket is never a constant: ``--bucket``, else the ``ArtifactBucketName``
output of ``--stack-name``, else of the stack group's buckets stack
(``<project_code>-<stack group>-buckets``, project_code from config/config.yaml).

``--upload`` is idempotent: each object carries its sha256 in its metadata and
is written only when it changed; objects under the ref that are no longer
produced are deleted. Wheels and zips are built reproducibly (fixed
timestamps), so an unchanged tree uploads nothing.

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
PROTECTED_NAMESPACES = frozenset({"bridge-downstream"})
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


@dataclass
class Artifact:
    key: str  # relative to the ref prefix
    path: Path


def collect_artifacts(project_root: Path, build_dir: Path, registry: Path | None = None) -> list[Artifact]:
    """Everything one ref consists of, built into ``build_dir``."""
    artifacts: list[Artifact] = []
    jobs_dir = project_root / "src" / "glue" / "jobs"
    for script in sorted(jobs_dir.glob("*.py")):
        artifacts.append(Artifact(f"glue/jobs/{script.name}", script))
    missing = [name for name in EXPECTED_JOBS if not (jobs_dir / name).exists()]
    if missing:
        log.warning("job scripts not in the tree yet, not uploaded: %s", ", ".join(missing))
    wheel = build_wheel(project_root, build_dir / "wheel")
    artifacts.append(Artifact(f"glue/python/{wheel.name}", wheel))
    for function_dir in sorted((project_root / "src" / "lambda").iterdir()):
        if (function_dir / "app.py").exists():
            bundle = build_lambda_bundle(function_dir, build_dir / "lambda")
            artifacts.append(Artifact(f"lambda/{bundle.name}", bundle))
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


def upload(s3, bucket: str, ref: str, artifacts: Iterable[Artifact], prune: bool = True) -> UploadReport:
    prefix = ref_prefix(ref)
    report = UploadReport(bucket, prefix)
    existing = {item["Key"] for item in list_keys(s3, bucket, prefix)}
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
        with tempfile.TemporaryDirectory(prefix="bd-artifacts-") as build_dir:
            artifacts = collect_artifacts(args.project_root, Path(build_dir), args.registry)
            report = upload(s3, bucket, args.ref, artifacts, prune=not args.no_prune)
        print(json.dumps(report.as_dict(), indent=2))
        return 0

    # --remove
    if (args.ref in PROTECTED_REFS or (args.namespace or "") in PROTECTED_NAMESPACES) and not args.force:
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
