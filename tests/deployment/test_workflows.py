"""GitHub Actions hygiene (issue 23): actions pinned to commits, permissions
per job, secrets never expanded into a shell line, one namespace rule for
deploy and cleanup, one concurrency key for both."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from deploy_fixtures import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
NAMESPACE_SCRIPT = WORKFLOWS / "namespace.sh"


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def namespace_of(branch: str) -> str:
    result = subprocess.run(["bash", str(NAMESPACE_SCRIPT), branch], capture_output=True, text=True, check=True)
    return result.stdout.strip()


@pytest.mark.parametrize("name", ["ci.yaml", "cleanup.yaml", "sweep.yaml"])
def test_actions_pinned_permissions_per_job_secrets_through_env(name):
    text = (WORKFLOWS / name).read_text()
    uses = re.findall(r"uses:\s*(\S+)", text)
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses
    document = workflow(name)
    assert document["permissions"] == {}
    for job_name, job in document["jobs"].items():
        assert "contents" in job["permissions"], job_name
        if job["permissions"].get("id-token") == "write":
            assert job.get("environment"), f"{job_name}: an OIDC job must name its environment (the roles trust it)"
        for step in job["steps"]:
            assert "${{ secrets." not in step.get("run", ""), f"{job_name}: a secret expanded into a shell line"
            assert "${{ github.event" not in step.get("run", ""), f"{job_name}: event data expanded into a shell line"


def test_deploy_and_cleanup_share_the_concurrency_key():
    deploy = workflow("ci.yaml")["jobs"]["deploy-develop"]["concurrency"]["group"]
    cleanup = workflow("cleanup.yaml")["jobs"]["delete-namespace"]["concurrency"]["group"]
    assert deploy == "namespace-${{ needs.namespace.outputs.namespace }}" == cleanup


def test_the_sweeper_runs_daily_and_deletes_under_the_same_key_after_checking_again():
    document = workflow("sweep.yaml")
    triggers = document[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"schedule", "workflow_dispatch"} and triggers["schedule"][0]["cron"]
    delete = document["jobs"]["delete-namespace"]
    assert delete["concurrency"]["group"] == "namespace-${{ matrix.namespace }}"
    assert delete["environment"] == document["jobs"]["orphaned"]["environment"] == "develop-branches"
    steps = {step.get("name"): step for step in delete["steps"]}
    assert "sweep_namespaces.py" in steps["Still orphaned"]["run"]
    removing = [steps["Delete the namespaced stacks"], steps["Remove the namespace's artifacts and data prefixes"]]
    assert all(step["if"] == "steps.still.outputs.orphaned == 'true'" for step in removing)
    cleanup = {
        step.get("name"): step.get("run") for step in workflow("cleanup.yaml")["jobs"]["delete-namespace"]["steps"]
    }
    assert [step["run"] for step in removing] == [
        cleanup["Delete the namespaced stacks"],
        cleanup["Remove the namespace's artifacts and data prefixes"],
    ]


def test_namespaces_cannot_collide_and_never_reach_the_default():
    assert namespace_of("main") == "bridge-downstream"
    branches = [
        "feature/a-very-long-branch-name-one",
        "feature/a-very-long-branch-name-two",
        "Feature/A",
        "feature-a",
        "bridge",
        "bridge-downstream",
        "---",
    ]
    namespaces = [namespace_of(b) for b in branches]
    assert len(set(namespaces)) == len(branches), namespaces
    for namespace in namespaces:
        assert re.fullmatch(r"br-([a-z0-9]+(-[a-z0-9]+)*-)?[0-9a-f]{7}", namespace), namespace
        assert len(namespace) <= 24 and not namespace.startswith("bridge-downstream")
    assert namespace_of("feature/x") == namespace_of("feature/x")
