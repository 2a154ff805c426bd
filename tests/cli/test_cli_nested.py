"""``publish --nested`` and ``run --nested``: every dataset published also gets
its nested table, queryable in the local catalog; without the flag (and the
profile's default) there is none."""

from __future__ import annotations

import json

from bridge_downstream_cli.main import main
from support import SAMPLE_REGISTRY_SOURCE, SAMPLES


def build_registry(out) -> None:
    sources = SAMPLE_REGISTRY_SOURCE
    assert (
        main(
            [
                "registry",
                "build",
                "--archive-map",
                str(sources / "archive-map.json"),
                "--schemas",
                str(sources / "schemas"),
            ]
            + ["--schema-mapping", str(sources / "schema-mapping.json")]
            + ["--dataset-mapping", str(sources / "dataset-mapping.json")]
            + ["--pipeline-rules", str(sources / "pipeline-rules.json"), "--out", str(out)]
        )
        == 0
    )


def test_publish_nested_adds_a_queryable_nested_table(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BRIDGE_DOWNSTREAM_ENGINE", raising=False)
    registry, output = tmp_path / "registry", tmp_path / "out"
    build_registry(registry)
    common = ["--registry", str(registry), "--output", str(output)]
    tolerated = ["--max-invalid", "3"]  # the samples' three invalid archives are there on purpose
    assert main(["run", str(SAMPLES / "archives"), *common, *tolerated, "--no-progress", "--engine", "arrow"]) == 0
    report = json.loads((output / "run-report.json").read_text())
    assert "dataset_taskdata_v1" in report["tables"]
    assert not [name for name in report["tables"] if name.endswith("_nested")]
    capsys.readouterr()

    assert main(["publish", *common, "--datasets", "TaskData_v1", "--nested", "--engine", "arrow"]) == 0
    printed = capsys.readouterr().out
    assert "dataset_taskdata_v1_nested" in printed
    sql = (
        "SELECT count(*) AS n FROM (SELECT unnest(steps) FROM dataset_taskdata_v1_nested)"
        " UNION ALL SELECT count(*) FROM dataset_taskdata_v1_steps"
    )
    assert main(["query", "--output", str(output), sql]) == 0
    cells = [line.strip("│ ") for line in capsys.readouterr().out.splitlines()]
    counts = [cell for cell in cells if cell.isdigit()]
    assert len(counts) == 2 and counts[0] == counts[1] and int(counts[0]) > 0

    fresh = ["--registry", str(registry), "--output", str(tmp_path / "fresh")]
    assert main(["run", str(SAMPLES / "archives"), *fresh, *tolerated, "--engine", "arrow", "--nested"]) == 0
    report = json.loads((tmp_path / "fresh" / "run-report.json").read_text())
    nested = {name: table for name, table in report["tables"].items() if name.endswith("_nested")}
    assert set(nested) == {f"dataset_{dataset_id.lower()}_nested" for dataset_id in report["published"]}
    assert nested["dataset_taskdata_v1_nested"]["rows"] == report["tables"]["dataset_taskdata_v1"]["rows"]
    assert nested["dataset_taskdata_v1_nested"]["csv"] is None
