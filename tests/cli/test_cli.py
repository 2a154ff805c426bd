"""The local command line, end to end on the bundled samples."""

import json

import pytest

from bridge_downstream_cli.main import main
from support import SAMPLE_REGISTRY_SOURCE, SAMPLES


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "registry"
    code = main(
        [
            "registry",
            "build",
            "--archive-map",
            str(SAMPLE_REGISTRY_SOURCE / "archive-map.json"),
            "--schemas",
            str(SAMPLE_REGISTRY_SOURCE / "schemas"),
            "--schema-mapping",
            str(SAMPLE_REGISTRY_SOURCE / "schema-mapping.json"),
            "--dataset-mapping",
            str(SAMPLE_REGISTRY_SOURCE / "dataset-mapping.json"),
            "--pipeline-rules",
            str(SAMPLE_REGISTRY_SOURCE / "pipeline-rules.json"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


@pytest.mark.spark
def test_run_ingests_publishes_and_reports_tables(spark, registry_dir, tmp_path, capsys):
    output = tmp_path / "out"
    assert (
        main(
            [
                "run",
                str(SAMPLES / "archives"),
                "--registry",
                str(registry_dir),
                "--output",
                str(output),
                "--no-progress",
                "--max-invalid",
                "3",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "8 archives -- 5 processed, 3 invalid, 0 skipped" in printed
    assert "dataset_taskdata_v1_steps_interactions" in printed
    report = json.loads((output / "run-report.json").read_text())
    tables = report["tables"]
    assert tables["dataset_motionrecord_v1"]["rows"] == 19
    assert tables["dataset_taskdata_v1_steps"]["parquet"].startswith("file://")
    assert set(report["published"]) == {
        "ArchiveMetadata_v1",
        "MotionRecord_v1",
        "SurveyAnswers_v1",
        "TaskData_v1",
        "TaskData_v2",
    }

    assert main(["query", "--output", str(output), "SELECT count(*) AS n FROM dataset_taskdata_v1_steps"]) == 0
    assert "9" in capsys.readouterr().out

    assert main(["rollback", "TaskData_v1", "--output", str(output)]) == 2
    assert "has no previous version to roll back to" in capsys.readouterr().err


def test_clear_errors_for_bad_usage(registry_dir, tmp_path, capsys):
    assert (
        main(["ingest", str(tmp_path / "missing"), "--registry", str(registry_dir), "--output", str(tmp_path / "o")])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert (
        main(["ingest", str(SAMPLES / "archives"), "--registry", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    )
    assert "has no registry.json" in capsys.readouterr().err
    assert (
        main(
            [
                "ingest",
                str(SAMPLES / "archives"),
                "--registry",
                str(registry_dir),
                "--output",
                str(tmp_path / "o"),
                "--profile",
                "nope",
            ]
        )
        == 2
    )
    assert "no profile 'nope'" in capsys.readouterr().err
