#!/usr/bin/env python3
"""Which branch namespaces of an account have no branch any more.

    sweep_namespaces.py --branches BRANCHES.txt [--stack-group develop] [--format lines|json]
    (BRANCHES.txt: every branch of the repository, one a line; - reads stdin)

A namespace is found wherever it leaves something: stacks tagged ``Namespace``,
an artifact ref ``BridgeDownstream/<ns>/``, data prefixes ``<ns>/`` and
``tmp/<ns>/`` in the intermediate and Parquet buckets. It is orphaned when it is
a branch namespace (``br-``, .github/workflows/namespace.sh), no listed branch
maps to it, and no listed branch is the one its stacks are tagged with. The
default namespace and protected refs are never listed; an empty branch list, or
one without ``main``, is refused (a failed branch listing must not look like
"every branch is gone").

.github/workflows/sweep.yaml runs the branch cleanup (cleanup.yaml's steps) for
each namespace printed. Only boto3; credentials and region from the environment.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import artifacts

NAMESPACE_SCRIPT = artifacts.PROJECT_ROOT / ".github" / "workflows" / "namespace.sh"
# namespace.sh starts every branch namespace with it; the branch roles own only these names.
BRANCH_NAMESPACE_PREFIX = "br-"
DEFAULT_BRANCH = "main"


def namespace_of(branch: str) -> str:
    """The branch's namespace, by the one rule deploy and cleanup use."""
    result = subprocess.run(["bash", str(NAMESPACE_SCRIPT), branch], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def namespaces_in_stacks(cloudformation) -> dict[str, set[str]]:
    """Namespace -> the branches its stacks are tagged with. ListStacks (the
    branch role may list every stack) then DescribeStacks on the branch-prefixed
    names only (the branch role may describe no other)."""
    names = set()
    for page in cloudformation.get_paginator("list_stacks").paginate():
        for summary in page.get("StackSummaries", []):
            if summary["StackStatus"] != "DELETE_COMPLETE" and summary["StackName"].startswith(BRANCH_NAMESPACE_PREFIX):
                names.add(summary["StackName"])
    found: dict[str, set[str]] = {}
    for name in sorted(names):
        for stack in cloudformation.describe_stacks(StackName=name)["Stacks"]:
            tags = {t["Key"]: t["Value"] for t in stack.get("Tags", [])}
            if "Namespace" in tags:
                found.setdefault(tags["Namespace"], set()).update([tags["Branch"]] if "Branch" in tags else [])
    return found


def top_level_prefixes(s3, bucket: str, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        found.update(common["Prefix"][len(prefix) :].strip("/") for common in page.get("CommonPrefixes", []))
    return found


def namespaces_in_buckets(s3, buckets: dict[str, str]) -> set[str]:
    """Artifact refs, and the data prefixes of the intermediate and Parquet buckets."""
    found = set(artifacts.list_ref(s3, buckets["ArtifactBucketName"], None))
    for output in ("IntermediateBucketName", "ParquetBucketName"):
        if buckets.get(output):
            found |= top_level_prefixes(s3, buckets[output]) | top_level_prefixes(s3, buckets[output], "tmp/")
    return found


def orphaned_namespaces(found: dict[str, set[str]], branches: Iterable[str]) -> list[str]:
    """The branch namespaces of ``found`` (namespace -> tagged branches) that no branch owns."""
    branches = {b for b in branches if b}
    if DEFAULT_BRANCH not in branches:
        raise SystemExit(f"the branch list lacks {DEFAULT_BRANCH!r}: refusing to sweep on an incomplete listing")
    live = {namespace_of(branch) for branch in branches}
    return sorted(
        namespace
        for namespace, tagged in found.items()
        if namespace.startswith(BRANCH_NAMESPACE_PREFIX)
        and namespace not in artifacts.PROTECTED_NAMESPACES
        and namespace not in artifacts.PROTECTED_REFS
        and not artifacts.is_release(namespace)
        and namespace not in live
        and not tagged & branches
    )


def find_namespaces(session, buckets: dict[str, str]) -> dict[str, set[str]]:
    found = namespaces_in_stacks(session.client("cloudformation"))
    for namespace in namespaces_in_buckets(session.client("s3"), buckets):
        found.setdefault(namespace, set())
    return found


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--branches", required=True, help="file of the repository's branch names, one a line (- stdin)")
    parser.add_argument("--stack-group", default="develop", help="sceptre stack group of the buckets stack")
    parser.add_argument("--format", choices=("lines", "json"), default="lines")
    parser.add_argument("--region", default=None)
    return parser.parse_args(argv)


def main(argv=None, session=None) -> int:
    args = parse_args(argv)
    import boto3

    text = sys.stdin.read() if args.branches == "-" else Path(args.branches).read_text()
    branches = [line.strip() for line in text.splitlines()]
    session = session or boto3.session.Session(region_name=args.region)
    buckets = artifacts.stack_outputs(session.client("cloudformation"), artifacts.buckets_stack_name(args.stack_group))
    orphans = orphaned_namespaces(find_namespaces(session, buckets), branches)
    print(json.dumps(orphans) if args.format == "json" else "\n".join(orphans))
    return 0


if __name__ == "__main__":
    sys.exit(main())
