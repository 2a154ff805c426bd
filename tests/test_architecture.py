"""Imports flow one way: entry points -> adapters -> core, and inside the core
from a stage to the stages and layers before it. Every module of ``src/`` is
checked; there is no exception list."""

import ast
import importlib
from pathlib import Path

import pytest

from project_paths import PROJECT_ROOT

SRC = PROJECT_ROOT / "src"
CORE = "bridge_downstream"
ADAPTERS = "bridge_downstream_adapters"
CLI = "bridge_downstream_cli"
THIRD_PARTY_KEPT_OUT_OF_THE_CORE = {"boto3", "botocore", "awsglue", "synapseclient"}
ENTRY_POINT_FOLDERS = ("glue", "lambda", "scripts")

# What each core package may import of the project, besides itself: the
# packages before it in the order data flows (docs/architecture.md, code map).
CORE_PACKAGE_MAY_IMPORT = {
    "common": set(),
    "config": {"common"},
    "ingest": {"common", "config"},
    "relationalize": {"common"},
    "publish": {"common", "config", "relationalize"},
    "exports": {"common", "config", "publish"},
    "replay": {"common", "config", "ingest"},
    "quality": {"common", "config", "publish"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str | None = None) -> set[str]:
    """Every module a file imports, anywhere in it, relative imports resolved
    (``name``: the file's module name, when it is not under ``src/``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (name or module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def top_level(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def core_packages(modules: set[str]) -> set[str]:
    return {name.split(".")[1] for name in modules if name.startswith(CORE + ".") and name.count(".") >= 1}


ALL_MODULES = sorted(SRC.rglob("*.py"))
CORE_MODULES = [p for p in ALL_MODULES if p.relative_to(SRC).parts[0] == CORE]
ADAPTER_MODULES = [p for p in ALL_MODULES if p.relative_to(SRC).parts[0] == ADAPTERS]
CLI_MODULES = [p for p in ALL_MODULES if p.relative_to(SRC).parts[0] == CLI]
ENTRY_POINT_SCRIPTS = [p for p in ALL_MODULES if p.relative_to(SRC).parts[0] in ENTRY_POINT_FOLDERS]


def ids(path: Path) -> str:
    return str(path.relative_to(SRC))


def test_every_module_is_in_one_checked_group():
    groups = [CORE_MODULES, ADAPTER_MODULES, CLI_MODULES, ENTRY_POINT_SCRIPTS]
    assert sum(len(g) for g in groups) == len(ALL_MODULES)
    assert all(groups)


@pytest.mark.parametrize("path", CORE_MODULES, ids=ids)
def test_the_core_imports_no_aws_glue_synapse_adapter_or_entry_point(path):
    imported = top_level(imported_modules(path))
    assert imported & (THIRD_PARTY_KEPT_OUT_OF_THE_CORE | {ADAPTERS, CLI, *ENTRY_POINT_FOLDERS}) == set()


@pytest.mark.parametrize("path", [p for p in CORE_MODULES if p.parent != SRC / CORE], ids=ids)
def test_a_core_package_imports_only_the_layers_before_it(path):
    package = path.relative_to(SRC / CORE).parts[0]
    others = core_packages(imported_modules(path)) - {package}
    assert others <= CORE_PACKAGE_MAY_IMPORT[package]


def test_the_order_of_the_core_packages_covers_every_package():
    packages = {p.name for p in (SRC / CORE).iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(CORE_PACKAGE_MAY_IMPORT)


@pytest.mark.parametrize("package", sorted(CORE_PACKAGE_MAY_IMPORT))
def test_every_core_package_states_its_public_api(package):
    module = importlib.import_module(f"{CORE}.{package}")
    assert module.__all__, f"{package} has an empty __all__"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("path", ADAPTER_MODULES, ids=ids)
def test_adapters_import_no_entry_point(path):
    assert top_level(imported_modules(path)) & {CLI, *ENTRY_POINT_FOLDERS} == set()


@pytest.mark.parametrize("path", CLI_MODULES + ENTRY_POINT_SCRIPTS, ids=ids)
def test_entry_points_import_no_other_entry_point(path):
    own = path.relative_to(SRC).parts[0]
    assert top_level(imported_modules(path)) & ({CLI, *ENTRY_POINT_FOLDERS} - {own}) == set()


@pytest.mark.parametrize("path", sorted((SRC / "glue" / "jobs").glob("*.py")), ids=lambda p: p.name)
def test_glue_jobs_run_without_awsglue(path):
    assert "awsglue" not in top_level(imported_modules(path))


def test_the_checks_see_imports_inside_functions_and_relative_ones(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from ..publish import versions\n    import boto3\n")
    found = imported_modules(probe, "bridge_downstream.ingest.probe")
    assert {"bridge_downstream.publish", "bridge_downstream.publish.versions", "boto3"} <= found


def test_the_code_map_matches_the_tree():
    """docs/architecture.md's code map: every core package has a row whose
    "may import" is the rule above, and every module of the core, the adapters
    and the command line is named in its package's row."""
    doc = (PROJECT_ROOT / "docs" / "architecture.md").read_text()
    code_map = doc[doc.index("## Code map") :]
    code_map = code_map[: code_map.index("\n## ", 1)]
    owns, may_import = {}, {}
    for line in code_map.splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if len(cells) == 3 and "`" in cells[0]:
            key = cells[0].split("`")[1].rstrip("/").removeprefix("src/")
            owns[key] = cells[1]
            may_import[key] = {name for name in cells[2].split("`")[1::2]}
    for package, allowed in CORE_PACKAGE_MAY_IMPORT.items():
        assert may_import.get(package) == allowed, package
    for folder, key in [
        *((SRC / CORE / p, p) for p in CORE_PACKAGE_MAY_IMPORT),
        (SRC / ADAPTERS, ADAPTERS),
        (SRC / CLI, CLI),
    ]:
        modules = sorted(p.name for p in folder.glob("*.py") if p.name != "__init__.py")
        assert [m for m in modules if f"`{m}`" not in owns[key]] == [], key
