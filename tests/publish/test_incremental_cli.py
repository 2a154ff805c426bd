"""``publish`` and ``run`` publish incrementally; ``--full`` rebuilds every
table in full (docs/publish.md, "Incremental versions")."""

import json

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish.manifest import read_current_manifests
from bridge_downstream_cli.main import main
from support import SAMPLE_REGISTRY_SOURCE, SAMPLES


def _registry(out) -> str:
    arguments = ["registry", "build", "--out", str(out)]
    arguments += ["--archive-map", str(SAMPLE_REGISTRY_SOURCE / "archive-map.json")]
    arguments += ["--schemas", str(SAMPLE_REGISTRY_SOURCE / "schemas")]
    arguments += ["--schema-mapping", str(SAMPLE_REGISTRY_SOURCE / "schema-mapping.json")]
    arguments += ["--dataset-mapping", str(SAMPLE_REGISTRY_SOURCE / "dataset-mapping.json")]
    arguments += ["--pipeline-rules", str(SAMPLE_REGISTRY_SOURCE / "pipeline-rules.json")]
    assert main(arguments) == 0
    return str(out)


def _tables(output) -> dict[str, int]:
    return {name: t.rows for m in read_current_manifests(LocalStorage(output)) for name, t in m.tables.items()}


def test_publish_is_incremental_and_full_rebuilds_the_same_tables(tmp_path, capsys):
    registry, output = _registry(tmp_path / "registry"), tmp_path / "out"
    run = [
        "run",
        str(SAMPLES / "archives"),
        "--registry",
        registry,
        "--output",
        str(output),
        "--no-progress",
        "--engine",
        "arrow",
    ]
    assert main([*run, "--max-invalid", "3"]) == 0
    report = json.loads((output / "run-report.json").read_text())
    assert report["increments"] and {i["mode"] for i in report["increments"].values()} == {"full"}
    first = _tables(output)

    assert main(["publish", "--output", str(output), "--registry", registry, "--engine", "arrow"]) == 0
    incremental = {m.dataset_id: m.increment for m in read_current_manifests(LocalStorage(output))}
    assert {i["mode"] for i in incremental.values()} == {"incremental"}
    assert all(i["partitions_rewritten"] == [] for i in incremental.values())
    assert _tables(output) == first

    assert main(["publish", "--output", str(output), "--registry", registry, "--engine", "arrow", "--full"]) == 0
    rebuilt = {m.dataset_id: m.increment for m in read_current_manifests(LocalStorage(output))}
    assert rebuilt and all(i == {"mode": "full", "reason": "requested (--full)"} for i in rebuilt.values())
    assert _tables(output) == first
    capsys.readouterr()
