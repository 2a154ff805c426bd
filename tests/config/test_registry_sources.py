"""Registry sources files (registry-sources/*.yaml): where they find the
sources, the rules they carry, and what they refuse."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from bridge_downstream.config import PipelineRules, RegistryError, RegistrySources, SchemaRegistry, build_registry
from bridge_downstream_cli.main import main
from project_paths import PROJECT_ROOT, shared_path
from support import SAMPLE_REGISTRY_SOURCE

MTB_SOURCES = PROJECT_ROOT / "registry-sources" / "mtb.yaml"

SAMPLE_SOURCES = {
    "format": 1,
    "roots": {"samples": "the bundled sample sources"},
    "archive_map": "samples/archive-map.json",
    "schemas": ["samples/schemas"],
    "schema_mapping": "samples/schema-mapping.json",
    "dataset_mapping": "samples/dataset-mapping.json",
    "rules": json.loads((SAMPLE_REGISTRY_SOURCE / "pipeline-rules.json").read_text()),
}


def write_sources(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump({**SAMPLE_SOURCES, **changes}))
    return path


@pytest.mark.shared_data
def test_the_mtb_rules_are_the_originals_as_the_facts_list_them():
    facts = json.loads(shared_path("bridge-downstream-config", "expected_validation_deviations.json").read_text())
    rules = RegistrySources.load(MTB_SOURCES, root=shared_path()).rules
    assert dict(rules.file_aliases) == facts["file_aliases"]
    accepted = facts["accepted_validation_errors"]
    assert [rule["when"] for rule in rules.accepted_deviations] == [accepted["applies_when"]] * len(accepted["by_file"])
    assert {rule["file"]: rule["messages"] for rule in rules.accepted_deviations} == accepted["by_file"]


def test_a_root_of_its_own_locates_its_paths(tmp_path):
    sources = RegistrySources.load(write_sources(tmp_path), roots={"samples": SAMPLE_REGISTRY_SOURCE})
    assert sources.archive_map == SAMPLE_REGISTRY_SOURCE / "archive-map.json"
    index = sources.build(tmp_path / "registry")
    registry = SchemaRegistry.load(tmp_path / "registry")
    assert registry.version == index["version"]
    assert registry.rules == PipelineRules.from_json(SAMPLE_SOURCES["rules"])
    assert dict(registry.rules.file_aliases) == {"motion_data.json": "motion.json"}


def test_a_common_root_holds_every_root_by_name(tmp_path):
    (tmp_path / "checkouts").mkdir()
    (tmp_path / "checkouts" / "samples").symlink_to(SAMPLE_REGISTRY_SOURCE)
    sources = RegistrySources.load(write_sources(tmp_path), root=tmp_path / "checkouts")
    assert sources.schema_dirs == (tmp_path / "checkouts" / "samples" / "schemas",)


@pytest.mark.parametrize(
    ("changes", "roots", "message"),
    [
        ({}, {}, "no folder for root samples, the bundled sample sources: pass --root DIR"),
        ({}, {"sample": "x"}, "unknown 'sample'"),
        ({"archive_map": "elsewhere/archive-map.json"}, None, "does not start with a root (samples)"),
        ({"schema_mapping": "samples/missing.json"}, None, "missing.json does not exist"),
        ({"schema_maping": "samples/schema-mapping.json"}, None, "unknown 'schema_maping'"),
        ({"format": 2}, None, "unsupported format 2"),
        (
            {"rules": {"accepted_deviations": [{"when": {"appid": "x"}, "file": "a.json", "messages": ["m"]}]}},
            None,
            "accepted_deviations[0].when: unknown 'appid'",
        ),
        (
            {"rules": {"accepted_deviations": [{"file": "a.json", "messages": "m"}]}},
            None,
            "accepted_deviations[0].messages must be a non-empty list",
        ),
    ],
)
def test_what_a_sources_file_cannot_mean_is_refused(tmp_path, changes, roots, message):
    located = {"samples": SAMPLE_REGISTRY_SOURCE} if roots is None else roots
    with pytest.raises(RegistryError) as error:
        RegistrySources.load(write_sources(tmp_path, **changes), roots=located)
    assert message in str(error.value)


def test_registry_build_takes_a_sources_file_or_each_source(tmp_path, capsys):
    sources = write_sources(tmp_path)
    out = tmp_path / "registry"
    assert (
        main(
            [
                "registry",
                "build",
                "--sources",
                str(sources),
                "--root",
                f"samples={SAMPLE_REGISTRY_SOURCE}",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert SchemaRegistry.load(out).rules.file_aliases == {"motion_data.json": "motion.json"}
    capsys.readouterr()
    both = ["registry", "build", "--sources", str(sources), "--archive-map", "a.json", "--out", str(out)]
    assert main(both) == 2
    assert "--sources names every source: drop --archive-map" in capsys.readouterr().err
    assert main(["registry", "build", "--archive-map", "a.json", "--out", str(out)]) == 2
    assert "missing --schemas, --schema-mapping, --dataset-mapping" in capsys.readouterr().err
    assert main(["registry", "build", "--sources", str(sources), "--out", str(out)]) == 2
    assert "no folder for root samples" in capsys.readouterr().err


def load_artifacts_script():
    path = PROJECT_ROOT / "src" / "scripts" / "manage_artifacts" / "artifacts.py"
    spec = importlib.util.spec_from_file_location("manage_artifacts_for_registry_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up by name while the class is made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_main_and_prod_deploy_only_a_registry_built_from_a_sources_file(tmp_path):
    artifacts = load_artifacts_script()
    from_sources = tmp_path / "from-sources"
    RegistrySources.load(write_sources(tmp_path), roots={"samples": SAMPLE_REGISTRY_SOURCE}).build(from_sources)
    assert json.loads((from_sources / "registry.json").read_text())["sources"] == "sources.yaml"
    by_hand = tmp_path / "by-hand"
    build_registry(
        archive_map=SAMPLE_REGISTRY_SOURCE / "archive-map.json",
        schema_dirs=[SAMPLE_REGISTRY_SOURCE / "schemas"],
        schema_mapping=SAMPLE_REGISTRY_SOURCE / "schema-mapping.json",
        dataset_mapping=SAMPLE_REGISTRY_SOURCE / "dataset-mapping.json",
        out=by_hand,
    )

    def check(*argv: str) -> None:
        artifacts.check_deployed_registry(artifacts.parse_args(["--upload", *argv]))

    check("--ref", "main", "--registry", str(from_sources))
    check("--ref", "main", "--stack-group", "prod", "--registry", str(from_sources))
    check("--ref", "feat-x", "--registry", str(by_hand))  # a branch may try any registry
    check("--ref", "main", "--registry", str(by_hand), "--force")
    for argv in (("--ref", "main", "--registry", str(by_hand)), ("--ref", "x", "--stack-group", "prod")):
        with pytest.raises(SystemExit) as refused:
            check(*argv)
        assert "--sources" in str(refused.value)
