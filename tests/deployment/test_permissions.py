"""Least privilege that works (issue 23): the CloudFormation execution roles
grant every handler permission of every resource type their stacks use (from
the registry schemas shipped with cfn-lint), scoped to their name prefix; and
the roles keep namespaces apart (tests/deployment/iam_eval.py evaluates the
rendered policies)."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest
import yaml
from iam_eval import Template, allowed, resolve, trusts

from deploy_fixtures import ROOT, render_group, require_sceptre

pytestmark = pytest.mark.deploy

ACCOUNT, REGION = "123456789012", "us-east-1"
BRANCH = "br-feat-x-1234567"
OTHER_BRANCH = "br-other-7654321"
REPOSITORY = "Sage-Bionetworks/BridgeDownstream"
BUCKETS = {
    "ArtifactBucketName": f"bridge-downstream-develop-artifacts-{ACCOUNT}",
    "IntermediateBucketName": f"bridge-downstream-develop-intermediate-{ACCOUNT}",
    "ParquetBucketName": f"bridge-downstream-develop-parquet-{ACCOUNT}",
    "InputBucketName": f"bridge-downstream-develop-input-{ACCOUNT}",
}
INPUT_TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:bridge-downstream-develop-input"
BOUNDARY = f"arn:aws:iam::{ACCOUNT}:policy/github-bridge-downstream-develop-role-boundary"
OIDC_PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}

# Handler permissions our templates never need, each with its reason. Nothing
# else may be missing from an execution role.
NOT_NEEDED = {
    "s3tables:*": "no S3 table buckets",
    "s3:*MetadataTableConfiguration": "no S3 metadata tables",
    "s3:UpdateBucketMetadata*": "no S3 metadata tables",
    "s3:*BucketAbac": "no attribute-based access control on buckets",
    "s3:REST.PUT.OBJECT": "not an IAM action (the log-group schema lists it)",
    "s3:PutObjectLockConfiguration": "not an IAM action (cfn-lint W3037): s3:PutBucketObjectLockConfiguration is",
    "lakeformation:*": "databases are not registered with Lake Formation",
    "glue:*Connection": "databases name no connection",
    "kms:*": "no customer-managed KMS keys (SSE-S3, SQS-managed SSE)",
    "ec2:*": "the Lambda runs outside a VPC",
    "elasticfilesystem:*": "the Lambda mounts no file system",
    "s3files:*": "the Lambda mounts no file system",
    "lambda:*CodeSigningConfig": "no code signing",
    "lambda:GetLayerVersion": "no layers",
    "lambda:PassCapacityProvider": "no capacity providers",
    "lambda:AssociateRuntimeAlias": "no runtime aliases",
    "firehose:*": "no log delivery to Firehose",
    "logs:CreateLogDelivery": "no vended log delivery",
    "logs:*DataProtectionPolicy": "no log data protection policies",
    "logs:*IndexPolic*": "no log field indexes",
    "logs:PutBearerTokenAuthentication": "no bearer-token log ingestion",
    "logs:PutLogGroupDeletionProtection": "no deletion protection on log groups",
    "logs:*ResourcePolic*": "no log resource policies",
    "sns:*DataProtectionPolicy": "no SNS data protection policies",
    "iam:DeleteRolePermissionsBoundary": "denied on purpose: a role never sheds the boundary",
    "iam:*GroupPolicy": "policies attach to roles only",
    "iam:*UserPolicy": "policies attach to roles only",
    "iam:PassRole": "checked per service below (only to Glue and Lambda)",
    "iam:GetRole": "checked with the roles' other permissions",
}


def schemas_dir() -> Path:
    return ROOT / "deploy" / ".venv" / "lib" / "python3.11" / "site-packages" / "cfnlint" / "data" / "schemas"


def handler_permissions(resource_type: str) -> set[str]:
    directory = schemas_dir()
    by_type = json.loads((directory / "providers" / "us-east-1.json").read_text())
    schema = json.loads((directory / "resources" / f"{by_type[resource_type]}.json").read_text())
    handlers = schema.get("handlers", {})
    return {p for h in ("create", "read", "update", "delete") for p in handlers.get(h, {}).get("permissions", [])}


def needed(permission: str) -> bool:
    return not any(fnmatch.fnmatchcase(permission, pattern) for pattern in NOT_NEEDED)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, dict[str, dict]]:
    """develop rendered for the default namespace and a branch namespace."""
    require_sceptre()
    out = {}
    for namespace in ("bridge-downstream", BRANCH):
        paths = render_group("develop", tmp_path_factory.mktemp(namespace), namespace)
        out[namespace] = {name: json.loads(path.read_text()) for name, path in paths.items()}
    return out


def trust_template(rendered) -> dict:
    return rendered["bridge-downstream"]["bridge-downstream-develop-github-oidc"]


def trust_refs() -> Template:
    refs = {
        **PSEUDO,
        **BUCKETS,
        "GitHubRepository": REPOSITORY,
        "ExistingOidcProviderArn": "",
        "InputTopicArn": INPUT_TOPIC,
        "NamespaceRoleBoundary": BOUNDARY,
        "GitHubOidcProvider": OIDC_PROVIDER,
    }
    for level in ("Main", "Branch"):
        refs[f"{level}ExecutionRole.Arn"] = f"arn:aws:iam::{ACCOUNT}:role/github-{level.lower()}-cfn"
        refs[f"{level}DeployRole.Arn"] = f"arn:aws:iam::{ACCOUNT}:role/github-{level.lower()}-deploy"
    return Template(refs, {"CreateProvider": True})


def role(rendered, logical: str) -> dict:
    return resolve(trust_template(rendered)["Resources"][logical]["Properties"], trust_refs())


def policy(properties: dict) -> list[dict]:
    return [s for p in properties["Policies"] for s in p["PolicyDocument"]["Statement"]]


# ------------------------------------------------------------------ handler permissions


LEVELS = {
    # level: (namespace it launches, stacks of that render it launches, artifact ref)
    "Main": ("bridge-downstream", lambda name: not name.endswith("-github-oidc"), "main/"),
    "Branch": (BRANCH, lambda name: name.startswith(f"{BRANCH}-"), f"{BRANCH}/"),
}


def example_request(action: str, resource_type: str, namespace: str, ref: str) -> tuple[str, dict[str, str]]:
    """A resource ARN of ``namespace`` the handler acts on with ``action``, and
    the request context IAM would see."""
    service, name = action.split(":", 1)
    prefix = f"arn:aws:{service}:{REGION}:{ACCOUNT}"
    database = namespace.replace("-", "_")
    if service == "s3":
        if name in ("GetObject", "GetObjectVersion"):  # the Lambda's code zip
            return f"arn:aws:s3:::{BUCKETS['ArtifactBucketName']}/BridgeDownstream/{ref}lambda/sqs_to_glue.zip", {}
        if name in ("DeleteObject", "PutObjectAcl"):
            return f"arn:aws:s3:::{namespace}-develop-input-{ACCOUNT}/key", {}
        return f"arn:aws:s3:::{namespace}-develop-input-{ACCOUNT}", {}
    if service == "sns":
        if resource_type == "AWS::SNS::Subscription":
            return f"{INPUT_TOPIC}:0b0c5e3a-1111-2222-3333-444455556666", {}
        return f"{prefix}:{namespace}-develop-input", {}
    if service == "sqs":
        return f"{prefix}:{namespace}-input", {}
    if service == "iam":
        return f"arn:aws:iam::{ACCOUNT}:role/{namespace}-glue-job", {"iam:PermissionsBoundary": BOUNDARY}
    if service == "lambda":
        function = f"{prefix}:function:{namespace}-sqs-to-glue"
        if resource_type == "AWS::Lambda::EventSourceMapping":
            return f"{prefix}:event-source-mapping:0b0c5e3a", {"lambda:FunctionArn": function}
        return function, {}
    if service == "glue":
        kind = resource_type.rsplit("::", 1)[1].lower()
        if kind == "database":
            return f"{prefix}:database/{database}_mtb_example", {}
        return f"{prefix}:{kind}/{namespace}-mtb-example-s3-to-json", {}
    if service == "logs":
        if name.startswith("Describe"):
            return "*", {}
        return f"{prefix}:log-group:/aws/lambda/{namespace}-sqs-to-glue", {}
    if service == "cloudwatch":
        return f"{prefix}:alarm:{namespace}-dead-letters", {}
    if service == "events":
        return f"{prefix}:rule/{namespace}-glue-failures", {}
    raise AssertionError(f"no example resource for {action}: add one, or a reason to NOT_NEEDED")


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_execution_role_grants_every_handler_permission_scoped(rendered, level):
    namespace, launches, ref = LEVELS[level]
    statements = policy(role(rendered, f"{level}ExecutionRole"))
    types = {
        resource["Type"]
        for name, template in rendered[namespace].items()
        if launches(name)
        for resource in template["Resources"].values()
    }
    assert "AWS::Lambda::Function" in types and "AWS::Glue::Job" in types
    missing = []
    for resource_type in sorted(types):
        for permission in sorted(filter(needed, handler_permissions(resource_type))):
            resource, context = example_request(permission, resource_type, namespace, ref)
            if not allowed(statements, permission, resource, context):
                missing.append(f"{resource_type}: {permission} on {resource}")
    assert not missing, "\n".join(missing)
    for service in ("glue.amazonaws.com", "lambda.amazonaws.com"):
        own_role = f"arn:aws:iam::{ACCOUNT}:role/{namespace}-glue-job"
        assert allowed(statements, "iam:PassRole", own_role, {"iam:PassedToService": service})
    assert not allowed(statements, "iam:PassRole", own_role, {"iam:PassedToService": "ec2.amazonaws.com"})


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_execution_role_creates_roles_only_with_the_boundary(rendered, level):
    namespace = LEVELS[level][0]
    statements = policy(role(rendered, f"{level}ExecutionRole"))
    own = f"arn:aws:iam::{ACCOUNT}:role/{namespace}-glue-job"
    assert allowed(statements, "iam:CreateRole", own, {"iam:PermissionsBoundary": BOUNDARY})
    assert not allowed(statements, "iam:CreateRole", own)
    other = f"arn:aws:iam::{ACCOUNT}:policy/AdministratorAccess"
    assert not allowed(statements, "iam:PutRolePolicy", own, {"iam:PermissionsBoundary": other})
    assert not allowed(statements, "iam:DeleteRolePermissionsBoundary", own)
    for trust_role in (
        "github-bridge-downstream-develop-develop-deploy",
        "github-bridge-downstream-develop-develop-cfn",
    ):
        arn = f"arn:aws:iam::{ACCOUNT}:role/{trust_role}"
        for action in ("iam:UpdateAssumeRolePolicy", "iam:DeleteRole", "iam:PutRolePolicy", "iam:PassRole"):
            assert not allowed(statements, action, arn, {"iam:PermissionsBoundary": BOUNDARY}), (level, action)
    assert not allowed(statements, "iam:CreatePolicyVersion", BOUNDARY)


def test_every_namespaced_role_carries_the_boundary(rendered):
    for name, template in rendered[BRANCH].items():
        if not name.startswith(f"{BRANCH}-"):
            continue
        for logical, resource in template["Resources"].items():
            if resource["Type"] == "AWS::IAM::Role":
                boundary = resolve(
                    resource["Properties"]["PermissionsBoundary"],
                    Template({**PSEUDO, "RoleBoundaryPolicyName": "github-bridge-downstream-develop-role-boundary"}),
                )
                assert boundary == BOUNDARY, (name, logical)


# ------------------------------------------------------------------ branch isolation


def test_each_deploy_role_trusts_only_its_environment(rendered):
    federated = {"Federated": OIDC_PROVIDER}
    for level, environment in (("Main", "develop"), ("Branch", "develop-branches")):
        trust = role(rendered, f"{level}DeployRole")["AssumeRolePolicyDocument"]["Statement"]
        for sub, expected in (
            (f"repo:{REPOSITORY}:environment:{environment}", True),
            (f"repo:{REPOSITORY}:ref:refs/heads/main", False),
            (f"repo:{REPOSITORY}:environment:prod", False),
            (f"repo:someone/fork:environment:{environment}", False),
        ):
            context = {
                "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
                "token.actions.githubusercontent.com:sub": sub,
            }
            assert trusts(trust, federated, "sts:AssumeRoleWithWebIdentity", context) is expected, (level, sub)


def test_branch_deploy_role_cannot_touch_main_stacks_artifacts_or_data(rendered):
    statements = policy(role(rendered, "BranchDeployRole"))
    stack = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack"
    artifacts = f"arn:aws:s3:::{BUCKETS['ArtifactBucketName']}/BridgeDownstream"
    data = f"arn:aws:s3:::{BUCKETS['IntermediateBucketName']}"
    assert allowed(statements, "cloudformation:UpdateStack", f"{stack}/{BRANCH}-queues/1")
    assert allowed(statements, "s3:PutObject", f"{artifacts}/{BRANCH}/glue/jobs/s3_to_json.py")
    assert allowed(statements, "s3:DeleteObjectVersion", f"{data}/{BRANCH}/mobile-toolbox/x.json")
    for name in (
        "bridge-downstream-queues/1",
        "bridge-downstream-develop-buckets/1",
        "bridge-downstream-develop-github-oidc/1",
    ):
        for action in ("cloudformation:UpdateStack", "cloudformation:DeleteStack", "cloudformation:ExecuteChangeSet"):
            assert not allowed(statements, action, f"{stack}/{name}"), (action, name)
    for key in ("main/lambda/sqs_to_glue.zip", "v0.2/glue/jobs/s3_to_json.py", "mainly/x"):
        for action in ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"):
            assert not allowed(statements, action, f"{artifacts}/{key}"), (action, key)
    for key in ("bridge-downstream/mobile-toolbox/x.json", "tmp/bridge-downstream/x", "bridge-downstream-x/y"):
        assert not allowed(statements, "s3:DeleteObject", f"{data}/{key}"), key
    main_execution = f"arn:aws:iam::{ACCOUNT}:role/github-main-cfn"
    assert not allowed(
        statements, "iam:PassRole", main_execution, {"iam:PassedToService": "cloudformation.amazonaws.com"}
    )


def test_branch_execution_role_cannot_create_or_change_default_namespace_resources(rendered):
    statements = policy(role(rendered, "BranchExecutionRole"))
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
    for action, resource in (
        ("sqs:DeleteQueue", arn.format("sqs", "bridge-downstream-input")),
        ("lambda:UpdateFunctionCode", arn.format("lambda", "function:bridge-downstream-sqs-to-glue")),
        ("glue:UpdateJob", arn.format("glue", "job/bridge-downstream-mtb-example-s3-to-json")),
        ("glue:DeleteDatabase", arn.format("glue", "database/bridge_downstream_mtb_example")),
        ("iam:DeleteRole", f"arn:aws:iam::{ACCOUNT}:role/bridge-downstream-glue-job"),
        ("s3:DeleteBucket", f"arn:aws:s3:::{BUCKETS['ParquetBucketName']}"),
        ("sns:DeleteTopic", INPUT_TOPIC),
        ("s3:GetObject", f"arn:aws:s3:::{BUCKETS['ArtifactBucketName']}/BridgeDownstream/main/lambda/sqs_to_glue.zip"),
    ):
        assert not allowed(statements, action, resource, {"iam:PermissionsBoundary": BOUNDARY}), (action, resource)


def glue_role_statements(rendered, namespace: str) -> list[dict]:
    template = rendered[namespace][f"{namespace}-glue-role"]
    refs = Template(
        {
            **PSEUDO,
            **BUCKETS,
            "Namespace": namespace,
            "DatabasePrefix": namespace.replace("-", "_"),
            "ArtifactRef": namespace,
            "InvalidQueueArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{namespace}-invalid-records",
            "SynapseAuthTokenParameterName": "/bridge-downstream/synapse/auth-token",
            "RoleBoundaryPolicyName": "github-bridge-downstream-develop-role-boundary",
        },
        {"ReadsSynapseToken": True},
    )
    return policy(resolve(template["Resources"]["GlueJobRole"]["Properties"], refs))


def develop_pipeline_ids() -> list[str]:
    return [p["id"] for p in yaml.safe_load((ROOT / "config" / "develop" / "config.yaml").read_text())["pipelines"]]


def test_a_namespace_glue_role_reaches_its_own_pipelines_catalog_and_workflows(rendered):
    statements = glue_role_statements(rendered, BRANCH)
    glue = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    pipelines = develop_pipeline_ids()
    assert len(pipelines) == 2
    for pipeline in pipelines:
        database = f"{BRANCH.replace('-', '_')}_{pipeline.replace('-', '_')}"
        for action in ("glue:CreateTable", "glue:DeleteTable", "glue:BatchCreatePartition"):
            assert allowed(statements, action, f"{glue}:catalog"), action
            assert allowed(statements, action, f"{glue}:database/{database}"), (action, database)
            assert allowed(statements, action, f"{glue}:table/{database}/dataset_x_v1"), (action, database)
        s3_to_json, json_to_parquet = (
            f"{glue}:workflow/{BRANCH}-{pipeline}-{w}" for w in ("s3-to-json", "json-to-parquet")
        )
        assert allowed(statements, "glue:PutWorkflowRunProperties", s3_to_json)
        assert allowed(statements, "glue:GetWorkflowRunProperties", json_to_parquet)


@pytest.mark.parametrize(
    "database, workflow",
    [
        # the namespace's own database prefix, but no configured pipeline's database or workflow
        (f"{BRANCH.replace('-', '_')}_unlisted", f"{BRANCH}-unlisted-s3-to-json"),
        (f"{BRANCH.replace('-', '_')}_mtb_example_2", f"{BRANCH}-mtb-example-2-s3-to-json"),
        (f"{BRANCH.replace('-', '_')}_mtb", f"{BRANCH}-mtb-example-s3-to-json-2"),
    ],
)
def test_a_namespace_glue_role_cannot_reach_an_unconfigured_pipeline_of_its_own_namespace(rendered, database, workflow):
    statements = glue_role_statements(rendered, BRANCH)
    glue = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    for action in ("glue:GetDatabase", "glue:CreateTable", "glue:DeleteTable", "glue:GetTables"):
        assert not allowed(statements, action, f"{glue}:database/{database}"), (action, database)
        assert not allowed(statements, action, f"{glue}:table/{database}/t"), (action, database)
    for action in ("glue:GetWorkflowRunProperties", "glue:PutWorkflowRunProperties", "glue:GetWorkflowRun"):
        assert not allowed(statements, action, f"{glue}:workflow/{workflow}"), (action, workflow)


@pytest.mark.parametrize("other", ["bridge-downstream", OTHER_BRANCH, BRANCH + "x"])
def test_a_namespace_glue_role_cannot_reach_another_namespace(rendered, other):
    statements = glue_role_statements(rendered, BRANCH)
    glue = f"arn:aws:glue:{REGION}:{ACCOUNT}"
    own_db, other_db = BRANCH.replace("-", "_"), other.replace("-", "_")
    intermediate = f"arn:aws:s3:::{BUCKETS['IntermediateBucketName']}"
    assert allowed(statements, "s3:PutObject", f"{intermediate}/{BRANCH}/mobile-toolbox/example/x.ndjson")
    assert allowed(statements, "glue:DeleteTable", f"{glue}:table/{own_db}_mtb_example/t")
    for action, resource in (
        ("s3:GetObject", f"{intermediate}/{other}/mobile-toolbox/example/x.ndjson"),
        ("s3:PutObject", f"{intermediate}/{other}/mobile-toolbox/example/x.ndjson"),
        (
            "s3:DeleteObject",
            f"arn:aws:s3:::{BUCKETS['ParquetBucketName']}/{other}/mobile-toolbox/example/published/CURRENT",
        ),
        ("glue:DeleteTable", f"{glue}:table/{other_db}_mtb_example/t"),
        ("glue:CreateTable", f"{glue}:database/{other_db}_mtb_example"),
        ("glue:GetDatabase", f"{glue}:database/{other_db}_recover_pilot"),
        ("glue:PutWorkflowRunProperties", f"{glue}:workflow/{other}-mtb-example-s3-to-json"),
        ("glue:GetWorkflowRunProperties", f"{glue}:workflow/{other}-recover-pilot-json-to-parquet"),
    ):
        assert not allowed(statements, action, resource), (action, resource)
