"""Every stack renders in both stack groups (sceptre, deploy/.venv), cfn-lint
reports zero errors on every rendered template, and the rendered templates
keep the security and naming rules of docs/architecture.md."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from deploy_fixtures import (
    ROOT,
    STACK_GROUPS,
    cfn_lint,
    lint_findings,
    render_group,
    require_sceptre,
    sceptre,
)
from project_paths import PROJECT_ROOT

pytestmark = pytest.mark.deploy

NAMESPACE = "feat-ci-1"


def group_config(group: str) -> dict:
    return yaml.safe_load((ROOT / "config" / group / "config.yaml").read_text())


def project_config() -> dict:
    text = (ROOT / "config" / "config.yaml").read_text()
    return yaml.safe_load(re.sub(r"\{\{.*?\}\}", "x", text))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[tuple[str, str], dict[str, Path]]:
    """(group, namespace) -> {stack name: rendered template.json}."""
    require_sceptre()
    out = {}
    for group in STACK_GROUPS:
        for namespace in (None, NAMESPACE):
            out[(group, namespace or "bridge-downstream")] = render_group(
                group, tmp_path_factory.mktemp(f"{group}-{namespace or 'default'}"), namespace
            )
    return out


def templates_of(rendered, group, namespace=NAMESPACE) -> dict[str, dict]:
    return {name: json.loads(path.read_text()) for name, path in rendered[(group, namespace)].items()}


def resources_of(template: dict, rtype: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


# ------------------------------------------------------------------ rendering and lint


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_generate_renders_every_stack(group, tmp_path):
    result = sceptre(["--output", "json", "generate", group], cwd=tmp_path, namespace=NAMESPACE)
    decoder, text, index, documents = json.JSONDecoder(), result.stdout, 0, []
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        document, index = decoder.raw_decode(text, index)
        documents.append(document)
    stack_files = [p for p in (ROOT / "config" / group).rglob("*.yaml") if p.name != "config.yaml"]
    assert len(documents) == len(stack_files)
    assert all("Resources" in d for d in documents)


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_stack_names_follow_the_namespace(rendered, group):
    names = set(rendered[(group, NAMESPACE)])
    pipelines = [p["id"] for p in group_config(group)["pipelines"]]
    assert names == {
        f"bridge-downstream-{group}-buckets",
        f"bridge-downstream-{group}-github-oidc",
        f"{NAMESPACE}-queues",
        f"{NAMESPACE}-glue-role",
        f"{NAMESPACE}-lambda-sqs-to-glue",
        f"{NAMESPACE}-alarms",
        *(f"{NAMESPACE}-pipeline-{p}" for p in pipelines),
    }
    default = set(rendered[(group, "bridge-downstream")])
    assert "bridge-downstream-queues" in default


def test_cfn_lint_zero_errors_in_every_rendered_template(rendered):
    # the default-namespace renders differ only in names: lint one namespace per group
    paths = [p for (group, ns), by_name in rendered.items() if ns == NAMESPACE for p in by_name.values()]
    paths += [ROOT / "src" / "lambda" / "sqs_to_glue" / "template.yaml"]
    result = cfn_lint(paths)
    errors = lint_findings(result, "E")
    assert not errors, "\n".join(errors)
    assert not lint_findings(result, "W"), result.stdout  # warnings too, while we can keep it so
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ config consistency


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_one_pipeline_stack_per_configured_app_and_study(group):
    configured = {p["id"] for p in group_config(group)["pipelines"]}
    files = {p.stem.removeprefix("pipeline-") for p in (ROOT / "config" / group / "namespaced").glob("pipeline-*.yaml")}
    assert configured == files
    for pipeline in group_config(group)["pipelines"]:
        assert re.fullmatch(r"[a-z0-9-]+", pipeline["id"])
        assert pipeline["dataset_groups"], pipeline["id"]
        datasets = [d for g in pipeline["dataset_groups"] for d in g["datasets"]]
        assert len(datasets) == len(set(datasets)), f"{pipeline['id']}: a dataset in two groups"


def test_package_version_matches_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project_config()["package_version"] == pyproject["project"]["version"]


def test_queue_visibility_is_six_times_the_lambda_timeout():
    config = project_config()
    assert config["queue_visibility_timeout"] >= 6 * config["lambda_timeout"]


# ------------------------------------------------------------------ security and naming


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_no_hard_coded_account_ids_or_bucket_names(rendered, group):
    for name, template in templates_of(rendered, group).items():
        text = json.dumps(template)
        assert not re.search(r"(?<![0-9a-f])\d{12}(?![0-9a-f])", text), f"{name}: a 12-digit account id"
        for bucket in resources_of(template, "AWS::S3::Bucket").values():
            assert "${AWS::AccountId}" in json.dumps(bucket["Properties"].get("BucketName", "${AWS::AccountId}"))
        assert "arn:aws:" not in text, f"{name}: use ${{AWS::Partition}}"


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_buckets_encrypted_private_tls_only(rendered, group):
    template = templates_of(rendered, group)[f"bridge-downstream-{group}-buckets"]
    buckets = resources_of(template, "AWS::S3::Bucket")
    policies = {p["Properties"]["Bucket"]["Ref"]: p for p in resources_of(template, "AWS::S3::BucketPolicy").values()}
    assert set(buckets) == {"ArtifactBucket", "InputBucket", "IntermediateBucket", "ParquetBucket"}
    for logical, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        assert (
            all(props["PublicAccessBlockConfiguration"].values()) and len(props["PublicAccessBlockConfiguration"]) == 4
        )
        statements = policies[logical]["Properties"]["PolicyDocument"]["Statement"]
        deny = [s for s in statements if isinstance(s, dict) and s.get("Effect") == "Deny"]
        assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert props.get("LifecycleConfiguration"), logical
    for logical in ("ArtifactBucket", "InputBucket", "ParquetBucket"):
        assert buckets[logical]["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    notification = buckets["InputBucket"]["Properties"]["NotificationConfiguration"]["TopicConfigurations"][0]
    assert notification["Topic"] == {"Ref": "InputTopic"}


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_github_role_drives_cloudformation_only(rendered, group):
    """Each workflow role manages stacks and artifacts; the stacks' resources
    are created by an execution role that only CloudFormation can assume."""
    template = templates_of(rendered, group)[f"bridge-downstream-{group}-github-oidc"]
    roles = resources_of(template, "AWS::IAM::Role")
    levels = {name.removesuffix("DeployRole") for name in roles if name.endswith("DeployRole")}
    assert levels == ({"Main", "Branch"} if group == "develop" else {"Main"})
    for level in levels:
        deploy = roles[f"{level}DeployRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        actions = {a for s in deploy for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
        assert {a.split(":")[0] for a in actions} == {"cloudformation", "iam", "s3"}
        assert not any(a.endswith("*") for a in actions)
        (pass_role,) = [s for s in deploy if s["Action"] == "iam:PassRole"]
        assert pass_role["Resource"] == {"Fn::GetAtt": [f"{level}ExecutionRole", "Arn"]}
        assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}
        trust = roles[f"{level}ExecutionRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": "cloudformation.amazonaws.com"}]


def test_stacks_take_the_cloudformation_service_role_from_a_variable():
    config = (PROJECT_ROOT / "config" / "config.yaml").read_text()
    assert "cloudformation_service_role: \"{{ var.cfn_service_role | default('') }}\"" in config
    for workflow in ("ci.yaml", "cleanup.yaml"):
        text = (PROJECT_ROOT / ".github" / "workflows" / workflow).read_text()
        commands = [
            line for line in text.splitlines() if "bin/sceptre " in line and (" launch " in line or " delete " in line)
        ]
        assert commands and all('cfn_service_role=$CFN_SERVICE_ROLE"' in line for line in commands), workflow
        assert "CFN_SERVICE_ROLE: ${{ secrets.AWS_CFN_EXECUTION_ROLE_ARN }}" in text, workflow


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_queue_redrive_and_subscription(rendered, group):
    template = templates_of(rendered, group)[f"{NAMESPACE}-queues"]
    queue = template["Resources"]["InputQueue"]["Properties"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    assert template["Parameters"]["MaxReceiveCount"]["Default"] == 3
    assert all(q["Properties"].get("SqsManagedSseEnabled") for q in resources_of(template, "AWS::SQS::Queue").values())
    subscription = template["Resources"]["InputTopicSubscription"]["Properties"]
    assert subscription["Protocol"] == "sqs" and subscription["RawMessageDelivery"] is False


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_lambda_reports_batch_item_failures_and_knows_every_workflow(rendered, group):
    template = templates_of(rendered, group)[f"{NAMESPACE}-lambda-sqs-to-glue"]
    mapping = template["Resources"]["EventSourceMapping"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    function = template["Resources"]["Function"]["Properties"]
    # by content hash: a code change is a new key, so `sceptre launch` updates the function
    assert function["Code"]["S3Key"] == {
        "Fn::Sub": "BridgeDownstream/${ArtifactRef}/lambda/sqs_to_glue-${LambdaCodeSha256}.zip"
    }
    workflows = json.loads(function["Environment"]["Variables"]["WORKFLOWS"]["Fn::Sub"])
    expected = {
        f"{p['app_id']}/{p['study_id']}": "${Namespace}-" + p["id"] + "-s3-to-json"
        for p in group_config(group)["pipelines"]
    }
    assert workflows == expected
    statements = template["Resources"]["FunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    for statement in statements:
        assert statement["Resource"] != "*" and "*" not in statement["Action"], statement


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_glue_role_is_scoped_to_the_namespace(rendered, group):
    template = templates_of(rendered, group)[f"{NAMESPACE}-glue-role"]
    statements = template["Resources"]["GlueJobRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    # a conditional statement ({"Fn::If": [condition, statement, NoValue]}) checked as its statement
    statements = [s["Fn::If"][1] if "Fn::If" in s else s for s in statements]
    by_sid = {s["Sid"]: s for s in statements}
    writes = json.dumps(by_sid["ReadWriteNamespaceData"]["Resource"])
    assert writes.count("${Namespace}/*") == 4
    assert "BridgeDownstream/${ArtifactRef}/*" in json.dumps(by_sid["ReadArtifacts"]["Resource"])
    for statement in statements:
        assert statement["Action"] != "*" and not any(a.endswith(":*") for a in statement["Action"])
        if statement["Resource"] == "*":
            assert statement["Sid"] == "Metrics" and statement["Condition"]


def stack_parameter_lines(path: Path, names: tuple[str, ...]) -> dict[str, str]:
    """The unrendered ``Name: value`` parameter lines of a sceptre stack config."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return {name: line for line in lines for name in names if line.startswith(f"{name}:")}


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_glue_role_grants_exactly_the_pipelines_databases_and_workflows(rendered, group):
    templates = templates_of(rendered, group)
    statements = templates[f"{NAMESPACE}-glue-role"]["Resources"]["GlueJobRole"]["Properties"]["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    by_sid = {s["Sid"]: s for s in statements if "Sid" in s}
    glue = "arn:${AWS::Partition}:glue:${AWS::Region}:${AWS::AccountId}:"
    catalog, workflows = set(), set()
    role_config = ROOT / "config" / group / "namespaced" / "glue-role.yaml"
    names = ("Namespace", "DatabasePrefix")
    for pipeline in group_config(group)["pipelines"]:
        # the names the pipeline stack gives its database and workflows, from the same parameters
        outputs = templates[f"{NAMESPACE}-pipeline-{pipeline['id']}"]["Outputs"]
        database = outputs["DatabaseName"]["Value"]["Fn::Sub"]
        catalog |= {f"{glue}database/{database}", f"{glue}table/{database}/*"}
        workflows |= {
            f"{glue}workflow/{outputs[o]['Value']['Fn::Sub']}"
            for o in ("S3ToJsonWorkflowName", "JsonToParquetWorkflowName")
        }
        pipeline_config = ROOT / "config" / group / "namespaced" / f"pipeline-{pipeline['id']}.yaml"
        assert stack_parameter_lines(pipeline_config, names) == stack_parameter_lines(role_config, names)
    granted = [r["Fn::Sub"] for r in by_sid["Catalog"]["Resource"]]
    assert granted[0] == f"{glue}catalog"
    assert sorted(granted[1:]) == sorted(catalog)
    assert sorted(r["Fn::Sub"] for r in by_sid["WorkflowRunProperties"]["Resource"]) == sorted(workflows)


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_pipeline_jobs_workflows_and_triggers(rendered, group):
    templates = templates_of(rendered, group)
    for pipeline in group_config(group)["pipelines"]:
        template = templates[f"{NAMESPACE}-pipeline-{pipeline['id']}"]
        jobs = resources_of(template, "AWS::Glue::Job")
        for job in jobs.values():
            props = job["Properties"]
            assert props["GlueVersion"] == "5.0" and props["Command"]["PythonVersion"] == "3"
            assert props["Command"]["ScriptLocation"]["Fn::Sub"].startswith(
                "s3://${ArtifactBucketName}/BridgeDownstream/${ArtifactRef}/glue/jobs/"
            )
            # the wheel and the locked dependencies, installed offline (artifacts.py)
            modules = props["DefaultArguments"]["--additional-python-modules"]["Fn::Sub"]
            assert modules.endswith("/glue/python/glue-environment.zip")
            assert modules.startswith("s3://${ArtifactBucketName}/BridgeDownstream/")
        s3_to_json = jobs["S3ToJsonJob"]["Properties"]["DefaultArguments"]
        for key in ("--json-root", "--registry-uri", "--profile", "--invalid-queue-url", "--app-id", "--study-id"):
            assert key in s3_to_json
        assert s3_to_json["--json-root"] == {
            "Fn::Sub": f"s3://${{IntermediateBucketName}}/${{Namespace}}/{pipeline['app_id']}/{pipeline['study_id']}"
        }
        parquet = {k: v for k, v in jobs.items() if k.startswith("JsonToParquet")}
        assert len(parquet) == len(pipeline["dataset_groups"])
        for dataset_group in pipeline["dataset_groups"]:
            (job,) = [
                j["Properties"]
                for j in parquet.values()
                if j["Properties"]["DefaultArguments"]["--datasets"] == ",".join(dataset_group["datasets"])
            ]
            assert job["WorkerType"] == dataset_group["worker_type"]
            assert job["NumberOfWorkers"] == dataset_group["workers"]
            for key in (
                "--json-root",
                "--published-root",
                "--registry-uri",
                "--profile",
                "--glue-database",
                "--catalog-table-prefix",
            ):
                assert key in job["DefaultArguments"]
        triggers = {t["Properties"]["Type"] for t in resources_of(template, "AWS::Glue::Trigger").values()}
        assert {"ON_DEMAND", "SCHEDULED"} <= triggers
        if pipeline.get("synapse_folder_id"):
            assert "CONDITIONAL" in triggers
        if pipeline.get("synapse_folder_id"):
            args = jobs["SynapseExportJob"]["Properties"]["DefaultArguments"]
            assert args["--ssm-parameter-name"] == {"Ref": "SynapseAuthTokenParameterName"}
            assert args["--synapse-folder-id"] == pipeline["synapse_folder_id"]
        assert len(resources_of(template, "AWS::Glue::Workflow")) == 2


def test_runner_reads_workflows_from_rendered_templates(rendered):
    from bridge_downstream_adapters.glue_workflow import workflows_from_template

    path = rendered[("develop", NAMESPACE)][f"{NAMESPACE}-pipeline-mtb-example"]
    parameters = {
        "Namespace": NAMESPACE,
        "DatabasePrefix": "feat_ci_1",
        "ArtifactRef": NAMESPACE,
        "ArtifactBucketName": "art",
        "IntermediateBucketName": "int",
        "ParquetBucketName": "pq",
        "GlueRoleArn": "arn:aws:iam::123456789012:role/x",
        "InvalidQueueUrl": "https://q",
    }
    workflows = workflows_from_template(path.read_text(), parameters)
    ingest = workflows[f"{NAMESPACE}-mtb-example-s3-to-json"]
    assert [t.type for t in ingest.start_triggers] == ["ON_DEMAND"]
    job = ingest.jobs[f"{NAMESPACE}-mtb-example-s3-to-json"]
    assert job.default_arguments["--json-root"] == f"s3://int/{NAMESPACE}/mobile-toolbox/example"
    assert job.script_name == "s3_to_json"
