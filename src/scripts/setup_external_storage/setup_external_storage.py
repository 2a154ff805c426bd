#!/usr/bin/env python3
"""Connect an S3 bucket prefix to a Synapse folder as external storage.

    setup_external_storage.py --bucket pipeline-bucket \
        --prefix bridge-downstream/mobile-toolbox/cxhnxd/published \
        --synapse-folder-id syn12345678 [--principal-id 3412345 ...] \
        [--sts-enabled] [--ssm-parameter-name /bridge-downstream/synapse-token] \
        [--dry-run]

Steps, each skipped when already in place (so reruns change nothing):

1. ``owner.txt`` at ``s3://<bucket>/<prefix>/owner.txt`` naming the Synapse
   principal ids allowed to create the storage location (default: the user
   of the auth token);
2. the bucket policy statements Synapse's AWS account needs on the bucket and
   the prefix, merged into the existing policy by ``Sid`` (other statements
   are kept);
3. an ``ExternalS3StorageLocationSetting`` for the bucket and prefix
   (``stsEnabled`` with ``--sts-enabled``), and the folder's upload setting
   pointing at it;
4. with ``--sts-enabled``, a read-only STS credential request as a check.

``--dry-run`` reads the current state and prints what would change; it
writes nothing. The Synapse auth token comes from ``--ssm-parameter-name``
or the environment variable ``BRIDGE_DOWNSTREAM_SYNAPSE_AUTH_TOKEN``.
Exact permissions: docs/synapse.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("setup_external_storage")

SYNAPSE_AWS_ACCOUNT = "325565585839"  # the AWS account Synapse (production) runs in
OWNER_FILE = "owner.txt"
EXTERNAL_S3 = "org.sagebionetworks.repo.model.project.ExternalS3StorageLocationSetting"
UPLOAD_LIST = "org.sagebionetworks.repo.model.project.UploadDestinationListSetting"
READ_ONLY_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes", "s3:GetObjectTagging"]
READ_WRITE_ACTIONS = ["s3:*Object*", "s3:*MultipartUpload*"]


class SetupError(RuntimeError):
    """The storage cannot be set up as asked; the message says why."""


@dataclass
class Step:
    name: str
    status: str  # "ok" (already in place), "create", "update", "checked"
    detail: str = ""

    def line(self, dry_run: bool) -> str:
        verb = {"ok": "already in place", "checked": "checked"}.get(
            self.status, f"{'would ' if dry_run else ''}{self.status}"
        )
        return f"{self.name}: {verb}{' -- ' + self.detail if self.detail else ''}"


# ------------------------------------------------------------------ pure


def owner_txt(principal_ids: list[str]) -> bytes:
    return ("\n".join(str(p) for p in principal_ids) + "\n").encode()


def _sid(kind: str, bucket: str, prefix: str) -> str:
    digest = hashlib.sha1(f"{bucket}/{prefix}".encode()).hexdigest()[:10]
    return f"SynapseExternalStorage{kind}{digest}"


def policy_statements(
    bucket: str, prefix: str, *, account: str = SYNAPSE_AWS_ACCOUNT, read_write: bool = False
) -> list[dict]:
    """What Synapse's account needs: list the bucket and find its region;
    read (or read and write) the objects under the prefix."""
    principal = {"AWS": f"arn:aws:iam::{account}:root"}
    objects = f"arn:aws:s3:::{bucket}/{prefix.strip('/')}/*" if prefix.strip("/") else f"arn:aws:s3:::{bucket}/*"
    return [
        {
            "Sid": _sid("List", bucket, prefix),
            "Effect": "Allow",
            "Principal": principal,
            "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": f"arn:aws:s3:::{bucket}",
        },
        {
            "Sid": _sid("Objects", bucket, prefix),
            "Effect": "Allow",
            "Principal": principal,
            "Action": READ_WRITE_ACTIONS if read_write else READ_ONLY_ACTIONS,
            "Resource": objects,
        },
    ]


def merge_policy(existing: dict | None, statements: list[dict]) -> dict:
    """``existing`` with ``statements`` added or replaced by Sid."""
    policy: dict[str, Any] = (
        json.loads(json.dumps(existing)) if existing else {"Version": "2012-10-17", "Statement": []}
    )
    current = policy.setdefault("Statement", [])
    if isinstance(current, dict):
        current = policy["Statement"] = [current]
    sids = {s["Sid"] for s in statements}
    policy["Statement"] = [s for s in current if s.get("Sid") not in sids] + statements
    return policy


def _same_policy(a: dict | None, b: dict) -> bool:
    if not a:
        return False
    key = lambda s: s.get("Sid", "")
    norm = lambda p: sorted(
        p.get("Statement", []) if isinstance(p.get("Statement"), list) else [p.get("Statement")], key=key
    )
    return json.dumps(norm(a), sort_keys=True) == json.dumps(norm(b), sort_keys=True)


# ----------------------------------------------------------------- steps


def ensure_owner_txt(s3, bucket: str, prefix: str, principal_ids: list[str], dry_run: bool) -> Step:
    from botocore.exceptions import ClientError

    key = f"{prefix.strip('/')}/{OWNER_FILE}" if prefix.strip("/") else OWNER_FILE
    wanted = owner_txt(principal_ids)
    try:
        current = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
            raise
        current = None
    if current is not None and current.split() == wanted.split():
        return Step(f"s3://{bucket}/{key}", "ok")
    if not dry_run:
        s3.put_object(Bucket=bucket, Key=key, Body=wanted, ContentType="text/plain")
    return Step(
        f"s3://{bucket}/{key}", "create" if current is None else "update", f"principal ids {', '.join(principal_ids)}"
    )


def ensure_bucket_policy(s3, bucket: str, prefix: str, dry_run: bool, *, account: str, read_write: bool) -> Step:
    from botocore.exceptions import ClientError

    try:
        existing = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchBucketPolicy":
            raise
        existing = None
    merged = merge_policy(existing, policy_statements(bucket, prefix, account=account, read_write=read_write))
    if _same_policy(existing, merged):
        return Step(f"bucket policy of {bucket}", "ok")
    if not dry_run:
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(merged))
    return Step(
        f"bucket policy of {bucket}",
        "create" if existing is None else "update",
        f"grant arn:aws:iam::{account}:root {'read-write' if read_write else 'read'} on {prefix or '/'}",
    )


def _grants(policy: dict | None, account: str, action: str, resource: str) -> bool:
    """Whether an Allow statement gives ``account`` ``action`` on ``resource``."""
    from fnmatch import fnmatchcase

    statements = (policy or {}).get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    for statement in statements:
        if statement.get("Effect") != "Allow" or "Condition" in statement:
            continue
        principal = statement.get("Principal", {})
        principals = principal.get("AWS", []) if isinstance(principal, dict) else [principal]
        principals = [principals] if isinstance(principals, str) else principals
        if not any(p in ("*", account) or f":{account}:" in p for p in principals):
            continue
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if any(fnmatchcase(action.lower(), a.lower()) for a in actions) and any(
            fnmatchcase(resource, r.replace("arn:aws-us-gov:", "arn:aws:")) for r in resources
        ):
            return True
    return False


def check_bucket_policy(s3, bucket: str, prefix: str, *, account: str) -> Step:
    """``--skip-bucket-policy``: the policy is managed elsewhere (CloudFormation,
    templates/buckets.yaml); only check that it grants what Synapse needs."""
    from botocore.exceptions import ClientError

    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchBucketPolicy":
            raise
        policy = None
    sample = f"arn:aws:s3:::{bucket}/{prefix.strip('/') + '/' if prefix.strip('/') else ''}owner.txt"
    needed = [
        ("s3:ListBucket", f"arn:aws:s3:::{bucket}"),
        ("s3:GetBucketLocation", f"arn:aws:s3:::{bucket}"),
        ("s3:GetObject", sample),
    ]
    missing = [action for action, resource in needed if not _grants(policy, account, action, resource)]
    if missing:
        raise SetupError(
            f"the bucket policy of {bucket} (managed elsewhere) does not grant "
            f"arn:aws:iam::{account}:root {', '.join(missing)} on {prefix or '/'}; "
            "enable Synapse in the bucket stack or drop --skip-bucket-policy"
        )
    return Step(f"bucket policy of {bucket}", "checked", "managed elsewhere; grants Synapse read access")


def _matches(location: dict, bucket: str, prefix: str, sts: bool) -> bool:
    return (
        location.get("concreteType") == EXTERNAL_S3
        and location.get("bucket") == bucket
        and (location.get("baseKey") or "").strip("/") == prefix.strip("/")
        and bool(location.get("stsEnabled")) == sts
    )


def ensure_storage_location(api, folder_id: str, bucket: str, prefix: str, sts: bool, dry_run: bool) -> list[Step]:
    setting = api.upload_project_setting(folder_id)
    current_ids = [int(i) for i in (setting or {}).get("locations") or []]
    if current_ids:
        first = api.storage_location(current_ids[0])
        if _matches(first, bucket, prefix, sts):
            return [
                Step(f"storage location {first['storageLocationId']}", "ok"),
                Step(f"upload setting of {folder_id}", "ok"),
            ]
    steps = []
    body = {
        "concreteType": EXTERNAL_S3,
        "bucket": bucket,
        "baseKey": prefix.strip("/") or None,
        "uploadType": "S3",
        "stsEnabled": sts,
    }
    if dry_run:
        steps.append(Step("storage location", "create", f"s3://{bucket}/{prefix} stsEnabled={sts}"))
        steps.append(Step(f"upload setting of {folder_id}", "update" if setting else "create"))
        return steps
    location = api.create_storage_location(body)  # Synapse returns the existing identical one
    location_id = int(location["storageLocationId"])
    steps.append(Step(f"storage location {location_id}", "create", f"s3://{bucket}/{prefix} stsEnabled={sts}"))
    others = [] if sts else [i for i in current_ids if i != location_id]  # STS: the only location
    if setting:
        api.update_project_setting({**setting, "locations": [location_id] + others})
        steps.append(Step(f"upload setting of {folder_id}", "update", f"locations {[location_id] + others}"))
    else:
        api.create_project_setting(
            {"concreteType": UPLOAD_LIST, "settingsType": "upload", "projectId": folder_id, "locations": [location_id]}
        )
        steps.append(Step(f"upload setting of {folder_id}", "create", f"locations [{location_id}]"))
    return steps


def setup(
    *,
    s3,
    api,
    bucket: str,
    prefix: str,
    folder_id: str,
    principal_ids: list[str] | None,
    sts_enabled: bool = False,
    dry_run: bool = False,
    account: str = SYNAPSE_AWS_ACCOUNT,
    read_write: bool = False,
    manage_bucket_policy: bool = True,
) -> list[Step]:
    prefix = prefix.strip("/")
    if not principal_ids:
        principal_ids = [str(api.syn.credentials.owner_id)]
    folder = api.entity(folder_id)
    if folder.get("concreteType", "").rsplit(".", 1)[-1] not in ("Folder", "Project"):
        raise SetupError(f"{folder_id} is a {folder.get('concreteType')}, not a Folder or Project")
    steps = [
        ensure_owner_txt(s3, bucket, prefix, principal_ids, dry_run),
        ensure_bucket_policy(s3, bucket, prefix, dry_run, account=account, read_write=read_write)
        if manage_bucket_policy
        else check_bucket_policy(s3, bucket, prefix, account=account),
    ]
    steps += ensure_storage_location(api, folder_id, bucket, prefix, sts_enabled, dry_run)
    if sts_enabled and not dry_run:
        credentials = api.sts_token(folder_id, "read_only")
        steps.append(
            Step(
                "STS read-only credentials",
                "checked",
                f"s3://{credentials.get('bucket')}/{credentials.get('baseKey') or ''}",
            )
        )
    return steps


# ------------------------------------------------------------------- CLI


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bucket", required=True)
    parser.add_argument(
        "--prefix", default="", help="base key of the storage, e.g. <namespace>/<app>/<study>/published"
    )
    parser.add_argument("--synapse-folder-id", required=True)
    parser.add_argument(
        "--principal-id",
        action="append",
        dest="principal_ids",
        help="Synapse user or team id for owner.txt (repeatable; default: the token's user)",
    )
    parser.add_argument("--sts-enabled", action="store_true", help="enable STS (only on an empty folder)")
    parser.add_argument(
        "--read-write", action="store_true", help="let Synapse write under the prefix too (default: read only)"
    )
    parser.add_argument(
        "--skip-bucket-policy",
        action="store_true",
        help="the bucket policy is managed elsewhere (CloudFormation): only check it",
    )
    parser.add_argument("--synapse-account-id", default=SYNAPSE_AWS_ACCOUNT)
    parser.add_argument("--ssm-parameter-name", help="SSM parameter holding the Synapse auth token")
    parser.add_argument("--synapse-endpoint", help="Synapse base URL (default: production)")
    parser.add_argument("--region", help="AWS region of the bucket and the SSM parameter")
    parser.add_argument("--dry-run", action="store_true")
    return parser.parse_args(argv)


def main(argv=None, *, s3=None, ssm=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    import boto3
    from botocore.exceptions import ClientError

    from bridge_downstream_adapters.secrets import SecretError, synapse_auth_token
    from bridge_downstream_adapters.synapse import SynapseApi, SynapseExportError, connect

    try:
        token = synapse_auth_token(
            args.ssm_parameter_name,
            ssm_client=ssm or (boto3.client("ssm", region_name=args.region) if args.ssm_parameter_name else None),
        )
        api = SynapseApi(connect(token, endpoint=args.synapse_endpoint))
        steps = setup(
            s3=s3 or boto3.client("s3", region_name=args.region),
            api=api,
            bucket=args.bucket,
            prefix=args.prefix,
            folder_id=args.synapse_folder_id,
            principal_ids=args.principal_ids,
            sts_enabled=args.sts_enabled,
            dry_run=args.dry_run,
            account=args.synapse_account_id,
            read_write=args.read_write,
            manage_bucket_policy=not args.skip_bucket_policy,
        )
    except (SecretError, SynapseExportError, SetupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "?")
        operation = getattr(error, "operation_name", "?")
        print(f"error: AWS {operation} failed with {code} (see docs/synapse.md for the permissions)", file=sys.stderr)
        return 2
    for step in steps:
        print(("DRY RUN " if args.dry_run else "") + step.line(args.dry_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
