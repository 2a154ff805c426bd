"""Imports flow one way: entry points -> adapters -> core."""

import ast
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

SRC = PROJECT_ROOT / "src"
FORBIDDEN_IN_CORE = {"boto3", "botocore", "awsglue", "synapseclient", "bridge_downstream_adapters"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


# cli.py is the local entry point: it wires adapters to the core, like a Glue job.
CORE_MODULES = sorted(p for p in (SRC / "bridge_downstream").rglob("*.py") if p.name != "cli.py")


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_the_core_imports_no_aws_glue_synapse_or_adapter(path):
    assert imported_modules(path) & FORBIDDEN_IN_CORE == set()


@pytest.mark.parametrize("path", sorted((SRC / "bridge_downstream_adapters").rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_adapters_do_not_import_entry_points(path):
    assert not imported_modules(path) & {"glue", "jobs", "app"}


@pytest.mark.parametrize("path", sorted((SRC / "glue" / "jobs").glob("*.py")), ids=lambda p: p.name)
def test_glue_jobs_run_without_awsglue(path):
    assert "awsglue" not in imported_modules(path)
