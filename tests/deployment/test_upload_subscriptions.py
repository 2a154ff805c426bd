"""Which uploads a namespace's input queue receives (issue 23, item 6): the
default namespace every upload; a develop branch namespace none unless it opts
in with branch_uploads_prefix ("*" all, or a key prefix the SNS subscription
filters on). The parameters sceptre passes, and what the rendered queues
template makes of them."""

from __future__ import annotations

import json

import pytest

from deploy_fixtures import sceptre

pytestmark = pytest.mark.deploy

BRANCH = "br-feature-1234567"
QUEUES = "develop/namespaced/queues.yaml"


def json_documents(text: str) -> list:
    """sceptre prints the stack and its dependencies, one JSON document each."""
    decoder, index, documents = json.JSONDecoder(), 0, []
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        document, index = decoder.raw_decode(text, index)
        documents.append(document)
    return documents


def queue_parameters(tmp_path, **variables: str) -> dict:
    result = sceptre(["--output", "json", "dump", "config", QUEUES], cwd=tmp_path, extra_vars=variables)
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "SubscribeToUploads" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json_documents(result.stdout))
    (parameters,) = found
    return parameters


def subscription_in(tmp_path, parameters: dict, **variables: str) -> dict | None:
    """The upload subscription of the rendered template under these parameters
    (its condition and filter evaluated as CloudFormation would)."""
    result = sceptre(["--output", "json", "generate", QUEUES], cwd=tmp_path, extra_vars=variables)
    (template,) = [d for d in json_documents(result.stdout) if "InputTopicSubscription" in d.get("Resources", {})]
    conditions = template["Conditions"]
    assert conditions["SubscribesToUploads"] == {"Fn::Equals": [{"Ref": "SubscribeToUploads"}, "true"]}
    assert conditions["FiltersUploadKeys"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "UploadsKeyPrefix"}, ""]}]}
    subscription = template["Resources"]["InputTopicSubscription"]
    assert subscription["Condition"] == "SubscribesToUploads"
    if parameters["SubscribeToUploads"] != "true":
        return None
    policy = subscription["Properties"]["FilterPolicy"]["Fn::If"]
    if parameters["UploadsKeyPrefix"] == "":
        return {"filter": None}
    key = policy[1]["Records"]["s3"]["object"]["key"]
    assert key == [{"prefix": {"Ref": "UploadsKeyPrefix"}}]
    return {"filter": parameters["UploadsKeyPrefix"]}


def test_the_default_namespace_takes_every_upload(tmp_path):
    parameters = queue_parameters(tmp_path)
    assert parameters["Namespace"] == "bridge-downstream"
    assert (parameters["SubscribeToUploads"], parameters["UploadsKeyPrefix"]) == ("true", "")
    assert subscription_in(tmp_path, parameters) == {"filter": None}


def test_the_default_namespace_ignores_a_branch_prefix(tmp_path):
    parameters = queue_parameters(tmp_path, branch_uploads_prefix="test/")
    assert (parameters["SubscribeToUploads"], parameters["UploadsKeyPrefix"]) == ("true", "")


def test_a_branch_takes_no_upload_unless_it_opts_in(tmp_path):
    parameters = queue_parameters(tmp_path, namespace=BRANCH)
    assert (parameters["SubscribeToUploads"], parameters["UploadsKeyPrefix"]) == ("false", "")
    assert subscription_in(tmp_path, parameters, namespace=BRANCH) is None


@pytest.mark.parametrize(("opt_in", "expected"), [("test/", ("true", "test/")), ("*", ("true", ""))])
def test_a_branch_opts_in_to_a_key_prefix_or_every_upload(tmp_path, opt_in, expected):
    variables = {"namespace": BRANCH, "branch_uploads_prefix": opt_in}
    parameters = queue_parameters(tmp_path, **variables)
    assert (parameters["SubscribeToUploads"], parameters["UploadsKeyPrefix"]) == expected
    assert subscription_in(tmp_path, parameters, **variables) == {"filter": expected[1] or None}
