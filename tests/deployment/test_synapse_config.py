"""Synapse configuration (issue 23, item 8): a placeholder folder id cannot
deploy. The committed configs hold none, artifacts.py --upload (which precedes
every launch) refuses one, and a rehearsal's own folder id (--var
synapse_folder_ids.<pipeline>=syn...) reaches the export job while a malformed
one stops the render."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from deploy_fixtures import ROOT, STACK_GROUPS, sceptre

sys.path.insert(0, str(ROOT / "src" / "scripts" / "manage_artifacts"))
import artifacts


def group_config(group: str) -> dict:
    return yaml.safe_load((ROOT / "config" / group / "config.yaml").read_text())


@pytest.mark.parametrize("group", STACK_GROUPS)
def test_the_committed_configs_hold_no_placeholder(group):
    assert artifacts.synapse_folder_problems(group_config(group)) == []
    assert "syn0" not in (ROOT / "config" / group / "config.yaml").read_text()


@pytest.mark.parametrize(
    "folder",
    [
        "syn00000000",
        "syn0",
        "syn012",
        "syn12345678",
        "syn123",
        "",
        "SYN51234567",
        "syn5123x",
        "51234567",
        51234567,
        None,
    ],
)
def test_a_placeholder_or_malformed_folder_id_is_a_problem(folder):
    config = {"pipelines": [{"id": "p1", "synapse_folder_id": folder}, {"id": "p2"}]}
    assert artifacts.synapse_folder_problems(config) == [f"p1: synapse_folder_id {folder!r}"]


def test_a_real_folder_id_or_none_at_all_is_accepted():
    config = {"pipelines": [{"id": "p1", "synapse_folder_id": "syn51234567"}, {"id": "p2"}]}
    assert artifacts.synapse_folder_problems(config) == []


def write_config(root: Path, group: str, folder: str) -> None:
    path = root / "config" / group / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({"pipelines": [{"id": "mtb-example", "synapse_folder_id": folder}]}))


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "even-with-force"])
def test_upload_refuses_a_placeholder_before_anything_is_built(tmp_path, force):
    write_config(tmp_path, "develop", "syn00000000")
    args = artifacts.parse_args(["--upload", "--ref", "br-x-1234567", "--project-root", str(tmp_path), *force])
    with pytest.raises(SystemExit, match=r"mtb-example: synapse_folder_id 'syn00000000'"):
        artifacts.check_synapse_folders(args)


def test_upload_accepts_a_real_folder_id(tmp_path):
    write_config(tmp_path, "prod", "syn51234567")
    args = artifacts.parse_args(["--upload", "--ref", "main", "--stack-group", "prod", "--project-root", str(tmp_path)])
    assert artifacts.check_synapse_folders(args) is None


# ------------------------------------------------------------------ the render step (sceptre)


def rendered(stack: str, tmp_path: Path, **variables: str) -> tuple[int, str]:
    result = sceptre(["--output", "json", "generate", stack], cwd=tmp_path, extra_vars=variables, check=False)
    return result.returncode, result.stdout + result.stderr


def export_folders(text: str) -> list[str]:
    """The --synapse-folder-id of every Glue job in the rendered templates
    (generate prints the stack and its dependencies, one JSON document each)."""
    decoder, index, folders = json.JSONDecoder(), 0, []
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        template, index = decoder.raw_decode(text, index)
        for resource in template.get("Resources", {}).values():
            if (
                resource["Type"] == "AWS::Glue::Job"
                and "--synapse-folder-id" in resource["Properties"]["DefaultArguments"]
            ):
                folders.append(resource["Properties"]["DefaultArguments"]["--synapse-folder-id"])
    return folders


@pytest.mark.deploy
@pytest.mark.parametrize(
    ("stack", "pipeline"),
    [
        ("develop/namespaced/pipeline-recover-pilot.yaml", "recover-pilot"),
        ("prod/namespaced/pipeline-mtb-example.yaml", "mtb-example"),
    ],
)
def test_a_rehearsal_folder_reaches_the_export_job_and_none_means_no_export(tmp_path, stack, pipeline):
    code, text = rendered(stack, tmp_path, **{f"synapse_folder_ids.{pipeline}": "syn4242"})
    assert code == 0, text
    assert export_folders(text) == ["syn4242"] and f"{pipeline}-synapse-export" in text
    code, text = rendered(stack, tmp_path)
    assert code == 0, text
    assert export_folders(text) == [] and "synapse-export" not in text


@pytest.mark.deploy
def test_a_malformed_rehearsal_folder_stops_the_render(tmp_path):
    code, text = rendered(
        "develop/namespaced/pipeline-recover-pilot.yaml",
        tmp_path,
        **{"synapse_folder_ids.recover-pilot": "syn00000000"},
    )
    assert code != 0
    assert "synapse_folder_ids.recover-pilot=syn00000000 is not a Synapse folder id" in text
