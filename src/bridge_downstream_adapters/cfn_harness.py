"""Complete a CloudFormation deployment on moto: create, from the templates the
stacks were launched with, the resources moto's CloudFormation silently skips.

moto's CloudFormation creates buckets (with encryption and tags only), queues,
topics, IAM roles, Lambda functions, event source mappings, log groups and SSM
parameters. It skips, without an error, every resource type it does not model
and most bucket properties. This module reads each stack's template back from
the (emulated) CloudFormation API, resolves the intrinsic functions against the
stack's parameters and the resources moto did create, and makes the missing
ones through boto3:

=============================  =============================================
template                        boto3 calls
=============================  =============================================
AWS::S3::Bucket properties      put_bucket_versioning, put_public_access_block,
                                put_bucket_ownership_controls,
                                put_bucket_lifecycle_configuration,
                                put_bucket_notification_configuration
AWS::S3::BucketPolicy           put_bucket_policy
AWS::SQS::QueuePolicy           set_queue_attributes(Policy)
AWS::SNS::TopicPolicy           set_topic_attributes(Policy)
AWS::SNS::Subscription          subscribe
AWS::IAM::OIDCProvider          create_open_id_connect_provider
AWS::Glue::Database             create_database
AWS::Glue::Job                  create_job / update_job
AWS::Glue::Workflow             create_workflow / update_workflow
AWS::Glue::Trigger              create_trigger (after deleting an older one)
=============================  =============================================

It is a test and rehearsal tool, never used against AWS (where CloudFormation
creates all of these itself). Running it again after a stack update applies the
template again (idempotent).

    from bridge_downstream_adapters.cfn_harness import emulate_stacks
    report = emulate_stacks(["bridge-downstream-develop-buckets", "ns-queues", ...])

The resolver (:class:`StackContext`) is also what
:func:`bridge_downstream_adapters.glue_workflow.load_workflow_from_template`
uses to read a workflow from a rendered template without any AWS API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

# ---------------------------------------------------------------- templates


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, !GetAtt, ...)."""


def _short_form(tag: str):
    def construct(loader: yaml.Loader, node: yaml.Node):
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        name = "Ref" if tag == "Ref" else "Condition" if tag == "Condition" else f"Fn::{tag}"
        return {name: value}

    return construct


for _tag in (
    "Ref",
    "Sub",
    "GetAtt",
    "Join",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "Select",
    "Split",
    "ImportValue",
    "FindInMap",
    "Base64",
    "GetAZs",
    "Condition",
    "Cidr",
    "Length",
    "ToJsonString",
):
    _CfnLoader.add_constructor(f"!{_tag}", _short_form(_tag))


def load_template(text: str | bytes | Mapping) -> dict:
    """A template as a dict, from JSON, YAML with short-form tags, or a dict."""
    if isinstance(text, Mapping):
        return dict(text)
    if isinstance(text, bytes):
        text = text.decode()
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return json.loads(text)
    return yaml.load(text, Loader=_CfnLoader)


# ---------------------------------------------------------------- resolution

NO_VALUE = object()


class UnresolvedError(ValueError):
    pass


@dataclass
class StackContext:
    """Resolves intrinsic functions of one stack's template.

    ``physical_ids`` maps logical ids to what ``Ref`` returns; ``get_att`` is
    called for ``Fn::GetAtt`` on resources (logical id, attribute) and may
    raise :class:`UnresolvedError`.
    """

    template: dict
    # Given as strings; __post_init__ turns List<...> and CommaDelimitedList ones into lists.
    parameters: dict[str, str | list[str]] = field(default_factory=dict)
    physical_ids: dict[str, str] = field(default_factory=dict)
    stack_name: str = "stack"
    region: str = "us-east-1"
    account_id: str = "123456789012"
    partition: str = "aws"
    get_att: Callable[[str, str], Any] | None = None
    exports: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        params: dict[str, str | list[str]] = {}
        for name, spec in (self.template.get("Parameters") or {}).items():
            if name in self.parameters:
                params[name] = self.parameters[name]
            elif "Default" in spec:
                params[name] = spec["Default"]
        for name, value in list(params.items()):
            spec = self.template["Parameters"][name]
            if str(spec.get("Type", "")).startswith("List<") or spec.get("Type") == "CommaDelimitedList":
                params[name] = [v.strip() for v in str(value).split(",")] if isinstance(value, str) else value
            else:
                params[name] = str(value)
        self.parameters = params
        self._conditions: dict[str, bool] = {}

    # -- pseudo parameters and Ref
    def pseudo(self, name: str) -> Any:
        return {
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::Partition": self.partition,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:{self.partition}:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/emulated",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }[name]

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        if name in self.physical_ids:
            return self.physical_ids[name]
        resource = (self.template.get("Resources") or {}).get(name)
        if resource is not None:
            guessed = physical_name(resource.get("Type", ""), self.resolve(resource.get("Properties") or {}))
            if guessed:
                return guessed
        raise UnresolvedError(f"cannot resolve Ref {name!r} in {self.stack_name}")

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self._conditions[name]

    def resource_enabled(self, resource: Mapping) -> bool:
        cond = resource.get("Condition")
        return True if cond is None else self.condition(cond)

    # -- the resolver
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            out = [self.resolve(v) for v in value]
            return [v for v in out if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._function(key[4:], arg)
        resolved_map: dict[Any, Any] = {}
        for k, v in value.items():
            resolved = self.resolve(v)
            if resolved is not NO_VALUE:
                resolved_map[k] = resolved
        return resolved_map

    def _function(self, name: str, arg: Any) -> Any:
        if name == "Sub":
            if isinstance(arg, list):
                text, variables = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
            else:
                text, variables = arg, {}
            return self._sub(text, variables)
        if name == "GetAtt":
            logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return self._get_att(logical, self.resolve(attribute))
        if name == "Join":
            sep, items = arg
            return sep.join(str(v) for v in self.resolve(items))
        if name == "If":
            cond, yes, no = arg
            return self.resolve(yes if self.condition(cond) else no)
        if name == "Equals":
            a, b = self.resolve(arg)
            return str(a) == str(b)
        if name == "Not":
            return not self.resolve(arg[0])
        if name == "And":
            return all(self.resolve(arg))
        if name == "Or":
            return any(self.resolve(arg))
        if name == "Select":
            index, items = self.resolve(arg)
            return items[int(index)]
        if name == "Split":
            sep, text = self.resolve(arg)
            return text.split(sep)
        if name == "ImportValue":
            key = self.resolve(arg)
            if key not in self.exports:
                raise UnresolvedError(f"no export {key!r}")
            return self.exports[key]
        if name == "FindInMap":
            m, k1, k2 = self.resolve(arg)
            return self.template["Mappings"][m][k1][k2]
        if name == "ToJsonString":
            return json.dumps(self.resolve(arg), separators=(",", ":"))
        if name == "Base64":
            import base64

            return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        raise UnresolvedError(f"Fn::{name} is not supported by the harness")

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match) -> str:
            expr = match.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                return str(variables[expr])
            if "." in expr and not expr.startswith("AWS::"):
                logical, attribute = expr.split(".", 1)
                return str(self._get_att(logical, attribute))
            return str(self.ref(expr))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def _get_att(self, logical: str, attribute: str) -> Any:
        if self.get_att is None:
            raise UnresolvedError(f"cannot resolve GetAtt {logical}.{attribute} without an API")
        return self.get_att(logical, attribute)


def physical_name(resource_type: str, props: Mapping[str, Any]) -> str | None:
    """The name CloudFormation's Ref returns for the named types we emulate."""
    if resource_type in ("AWS::Glue::Job", "AWS::Glue::Workflow", "AWS::Glue::Trigger"):
        return props.get("Name")
    if resource_type == "AWS::Glue::Database":
        return (props.get("DatabaseInput") or {}).get("Name")
    return None


# ---------------------------------------------------------------- emulation


@dataclass
class EmulationReport:
    created: list[str] = field(default_factory=list)  # "stack:LogicalId (Type)"
    skipped: list[str] = field(default_factory=list)  # disabled by a condition
    adjusted: list[str] = field(default_factory=list)  # applied differently from AWS, and why

    def extend(self, other: EmulationReport) -> None:
        self.created += other.created
        self.skipped += other.skipped
        self.adjusted += other.adjusted


# Creation order inside one stack: a trigger needs its jobs and workflow.
_ORDER = [
    "AWS::S3::Bucket",
    "AWS::SNS::TopicPolicy",
    "AWS::SQS::QueuePolicy",
    "AWS::S3::BucketPolicy",
    "AWS::SNS::Subscription",
    "AWS::IAM::OIDCProvider",
    "AWS::Glue::Database",
    "AWS::Glue::Job",
    "AWS::Glue::Workflow",
    "AWS::Glue::Trigger",
]

EMULATED_TYPES = frozenset(_ORDER)


class Harness:
    """Emulates the skipped resources of stacks on one (moto) endpoint."""

    def __init__(self, session=None, region: str | None = None, keep_conditional_denies: bool = False):
        """``keep_conditional_denies``: apply bucket policies exactly. moto
        evaluates a bucket policy's Deny statements without their Condition, so
        the TLS-only statement (Deny when aws:SecureTransport is false) would
        deny every request; by default such statements are left out (and listed
        in the report's ``adjusted``)."""
        import boto3

        self.keep_conditional_denies = keep_conditional_denies
        self._report: EmulationReport | None = None
        self.session = session or boto3.session.Session()
        self.region = region or self.session.region_name or "us-east-1"
        self._clients: dict[str, Any] = {}
        self.account_id = self.client("sts").get_caller_identity()["Account"]

    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.region)
        return self._clients[service]

    # -- reading a stack back
    def stack_context(self, stack_name: str) -> StackContext:
        cfn = self.client("cloudformation")
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        body = cfn.get_template(StackName=stack_name)["TemplateBody"]
        template = load_template(body)
        parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
        physical: dict[str, str] = {}
        types: dict[str, str] = {}
        paginator = cfn.get_paginator("list_stack_resources")
        for page in paginator.paginate(StackName=stack_name):
            for summary in page["StackResourceSummaries"]:
                if summary.get("LogicalResourceId") and summary.get("PhysicalResourceId"):
                    physical[summary["LogicalResourceId"]] = summary["PhysicalResourceId"]
                    types[summary["LogicalResourceId"]] = summary["ResourceType"]
        exports = {}
        for page in cfn.get_paginator("list_exports").paginate():
            exports.update({e["Name"]: e["Value"] for e in page.get("Exports", [])})
        context = StackContext(
            template=template,
            parameters=parameters,
            physical_ids=physical,
            stack_name=stack_name,
            region=self.region,
            account_id=self.account_id,
            exports=exports,
        )
        context.get_att = lambda logical, attribute: self._get_att(context, logical, attribute)
        return context

    def _get_att(self, context: StackContext, logical: str, attribute: str) -> Any:
        resource = context.template["Resources"][logical]
        rtype = resource["Type"]
        physical = context.ref(logical)
        arn_prefix = f"arn:{context.partition}"
        if rtype == "AWS::S3::Bucket":
            return {
                "Arn": f"{arn_prefix}:s3:::{physical}",
                "DomainName": f"{physical}.s3.amazonaws.com",
                "RegionalDomainName": f"{physical}.s3.{self.region}.amazonaws.com",
            }[attribute]
        if rtype == "AWS::SQS::Queue":
            if attribute == "QueueUrl":
                return physical
            attrs = self.client("sqs").get_queue_attributes(QueueUrl=physical, AttributeNames=["QueueArn"])[
                "Attributes"
            ]
            return {"Arn": attrs["QueueArn"], "QueueName": attrs["QueueArn"].rsplit(":", 1)[1]}[attribute]
        if rtype == "AWS::SNS::Topic":
            return {"TopicArn": physical, "TopicName": physical.rsplit(":", 1)[1]}[attribute]
        if rtype == "AWS::IAM::Role":
            role = self.client("iam").get_role(RoleName=physical.rsplit("/", 1)[-1])["Role"]
            return {"Arn": role["Arn"], "RoleId": role["RoleId"]}[attribute]
        if rtype == "AWS::Lambda::Function":
            return self.client("lambda").get_function(FunctionName=physical)["Configuration"]["FunctionArn"]
        if rtype == "AWS::Logs::LogGroup" and attribute == "Arn":
            return f"{arn_prefix}:logs:{self.region}:{self.account_id}:log-group:{physical}:*"
        raise UnresolvedError(f"GetAtt {logical}.{attribute} ({rtype}) is not supported by the harness")

    # -- emulation
    def emulate_stack(self, stack_name: str) -> EmulationReport:
        context = self.stack_context(stack_name)
        report = self._report = EmulationReport()
        resources = context.template.get("Resources") or {}
        ordered = sorted(
            resources.items(),
            key=lambda item: _ORDER.index(item[1]["Type"]) if item[1]["Type"] in _ORDER else len(_ORDER),
        )
        for logical, resource in ordered:
            rtype = resource["Type"]
            label = f"{stack_name}:{logical} ({rtype})"
            if rtype not in EMULATED_TYPES:
                continue
            if not context.resource_enabled(resource):
                report.skipped.append(label + " condition false")
                continue
            props = context.resolve(resource.get("Properties") or {})
            handler = getattr(self, "_emulate_" + rtype.split("::", 1)[1].replace("::", "_").lower())
            physical = handler(context, logical, props)
            if physical:
                context.physical_ids.setdefault(logical, physical)
            report.created.append(label)
        return report

    def emulate_stacks(self, stack_names: Iterable[str]) -> EmulationReport:
        report = EmulationReport()
        for name in stack_names:
            report.extend(self.emulate_stack(name))
        return report

    # S3
    def _emulate_s3_bucket(self, context, logical, props):
        s3 = self.client("s3")
        bucket = context.ref(logical)
        if "VersioningConfiguration" in props:
            s3.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]}
            )
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )
        if "OwnershipControls" in props:
            s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=props["OwnershipControls"])
        if "LifecycleConfiguration" in props:
            rules = [_lifecycle_rule(rule) for rule in props["LifecycleConfiguration"]["Rules"]]
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
        if "NotificationConfiguration" in props:
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration=_notification_configuration(props["NotificationConfiguration"])
            )
        return bucket

    def _emulate_s3_bucketpolicy(self, context, logical, props):
        document = dict(props["PolicyDocument"])
        if not self.keep_conditional_denies:
            kept = [s for s in document["Statement"] if not (s.get("Effect") == "Deny" and s.get("Condition"))]
            if len(kept) != len(document["Statement"]):
                self._report.adjusted.append(
                    f"{context.stack_name}:{logical}: conditional Deny statements left out "
                    "(moto ignores their Condition and would deny every request)"
                )
            document["Statement"] = kept
        if document["Statement"]:
            self.client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(document))

    # SQS / SNS
    def _emulate_sqs_queuepolicy(self, context, logical, props):
        for url in props["Queues"]:
            self.client("sqs").set_queue_attributes(
                QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])}
            )

    def _emulate_sns_topicpolicy(self, context, logical, props):
        for arn in props["Topics"]:
            self.client("sns").set_topic_attributes(
                TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(props["PolicyDocument"])
            )

    def _emulate_sns_subscription(self, context, logical, props):
        attributes = {}
        for key in ("RawMessageDelivery", "FilterPolicyScope", "DeliveryPolicy"):
            if key in props:
                value = props[key]
                attributes[key] = (
                    str(value).lower()
                    if isinstance(value, bool)
                    else (json.dumps(value) if isinstance(value, dict) else str(value))
                )
        for key in ("FilterPolicy", "RedrivePolicy"):
            if key in props:
                attributes[key] = json.dumps(props[key]) if not isinstance(props[key], str) else props[key]
        response = self.client("sns").subscribe(
            TopicArn=props["TopicArn"],
            Protocol=props["Protocol"],
            Endpoint=props["Endpoint"],
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )
        return response["SubscriptionArn"]

    # IAM
    def _emulate_iam_oidcprovider(self, context, logical, props):
        iam = self.client("iam")
        url = props["Url"]
        host = url.split("://", 1)[-1]
        arn = f"arn:aws:iam::{self.account_id}:oidc-provider/{host}"
        existing = [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]
        if arn not in existing:
            arn = iam.create_open_id_connect_provider(
                Url=url, ClientIDList=props.get("ClientIdList", []), ThumbprintList=props.get("ThumbprintList", [])
            )["OpenIDConnectProviderArn"]
        return arn

    # Glue
    def _emulate_glue_database(self, context, logical, props):
        glue = self.client("glue")
        name = props["DatabaseInput"]["Name"]
        try:
            glue.create_database(DatabaseInput=props["DatabaseInput"])
        except glue.exceptions.AlreadyExistsException:
            glue.update_database(Name=name, DatabaseInput=props["DatabaseInput"])
        return name

    _JOB_KEYS = (
        "Description",
        "Role",
        "Command",
        "DefaultArguments",
        "NonOverridableArguments",
        "GlueVersion",
        "WorkerType",
        "NumberOfWorkers",
        "Timeout",
        "MaxRetries",
        "ExecutionProperty",
        "MaxCapacity",
        "Connections",
        "SecurityConfiguration",
        "NotificationProperty",
        "ExecutionClass",
        "Tags",
    )

    def _emulate_glue_job(self, context, logical, props):
        glue = self.client("glue")
        args = {k: props[k] for k in self._JOB_KEYS if k in props}
        if isinstance(args.get("Connections"), dict):
            pass
        try:
            glue.get_job(JobName=props["Name"])
            args.pop("Tags", None)
            glue.update_job(JobName=props["Name"], JobUpdate=args)
        except glue.exceptions.EntityNotFoundException:
            glue.create_job(Name=props["Name"], **args)
        return props["Name"]

    def _emulate_glue_workflow(self, context, logical, props):
        glue = self.client("glue")
        args = {k: props[k] for k in ("Description", "DefaultRunProperties", "MaxConcurrentRuns") if k in props}
        try:
            glue.get_workflow(Name=props["Name"])
            glue.update_workflow(Name=props["Name"], **args)
        except glue.exceptions.EntityNotFoundException:
            glue.create_workflow(Name=props["Name"], **args)
        return props["Name"]

    def _emulate_glue_trigger(self, context, logical, props):
        glue = self.client("glue")
        try:
            glue.delete_trigger(Name=props["Name"])
        except glue.exceptions.EntityNotFoundException:
            pass
        args = {
            k: props[k]
            for k in (
                "WorkflowName",
                "Type",
                "Schedule",
                "Predicate",
                "Actions",
                "Description",
                "StartOnCreation",
                "EventBatchingCondition",
            )
            if k in props
        }
        if isinstance(args.get("StartOnCreation"), str):
            args["StartOnCreation"] = args["StartOnCreation"].lower() == "true"
        glue.create_trigger(Name=props["Name"], **args)
        return props["Name"]


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict:
    out: dict[str, Any] = {"ID": rule.get("Id", "rule"), "Status": rule["Status"]}
    prefix = rule.get("Prefix")
    out["Filter"] = {"Prefix": prefix} if prefix is not None else {"Prefix": ""}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpiration" in rule:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        }
    if "NoncurrentVersionExpirationInDays" in rule:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        }
    return out


def _notification_filter(config: Mapping[str, Any]) -> dict:
    if "Filter" not in config:
        return {}
    rules = config["Filter"].get("S3Key", {}).get("Rules", [])
    return {"Filter": {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}}


def _notification_configuration(props: Mapping[str, Any]) -> dict:
    out: dict[str, list] = {}
    for cfn_key, api_key, target_key, api_target in (
        ("TopicConfigurations", "TopicConfigurations", "Topic", "TopicArn"),
        ("QueueConfigurations", "QueueConfigurations", "Queue", "QueueArn"),
        ("LambdaConfigurations", "LambdaFunctionConfigurations", "Function", "LambdaFunctionArn"),
    ):
        for config in props.get(cfn_key, []):
            out.setdefault(api_key, []).append(
                {api_target: config[target_key], "Events": [config["Event"]], **_notification_filter(config)}
            )
    return out


def emulate_stacks(stack_names: Iterable[str], session=None, region: str | None = None) -> EmulationReport:
    """Create the skipped resources of the named stacks (in the order given)."""
    return Harness(session=session, region=region).emulate_stacks(stack_names)


def disable_event_source_mappings(
    function_name: str | None = None, session=None, region: str | None = None
) -> list[str]:
    """Disable (emulated) Lambda event source mappings.

    moto invokes a mapped function in Docker whenever a message reaches its
    queue; with no Docker the invocation fails and the message's receive count
    grows. Tests play the Lambda poller themselves (receive, call the handler
    in-process, delete what succeeded), so the mappings are switched off.
    """
    import boto3

    client = (session or boto3.session.Session()).client("lambda", region_name=region)
    disabled = []
    kwargs = {"FunctionName": function_name} if function_name else {}
    for mapping in client.list_event_source_mappings(**kwargs)["EventSourceMappings"]:
        if mapping.get("State") != "Disabled":
            client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
            disabled.append(mapping["UUID"])
    return disabled
