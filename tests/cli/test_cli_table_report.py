"""The run report says what the table contract did: the values rescued, per
dataset and path, and the keys no schema declares."""

from __future__ import annotations

import json

from bridge_downstream_cli.main import main
from support import build_sample_registry, mtb_metadata, write_archive


def _run(folder, output, registry_dir) -> dict:
    arguments = ["run", str(folder), "--registry", str(registry_dir), "--output", str(output), "--no-progress"]
    assert main([*arguments, "--engine", "arrow"]) == 0
    return json.loads((output / "run-report.json").read_text())


def test_the_run_report_counts_rescued_values(tmp_path, capsys):
    registry_dir = tmp_path / "registry"
    build_sample_registry(registry_dir)
    output = tmp_path / "out"
    write_archive(tmp_path / "a" / "r1.zip", {"answers.json": [{"q2": 3}]}, mtb_metadata("r1", "legacy-survey"))
    first = _run(tmp_path / "a", output, registry_dir)
    assert first["rescued_values"] == {}
    later = mtb_metadata("r2", "legacy-survey", uploaded_on="2024-03-02T10:00:00.000Z")
    write_archive(tmp_path / "b" / "r2.zip", {"answers.json": [{"q2": "n/a"}]}, later)
    capsys.readouterr()
    second = _run(tmp_path / "b", output, registry_dir)
    assert second["rescued_values"] == {"SurveyAnswers_v1": {"q2": 1}}
    assert "SurveyAnswers_v1: 1 values did not fit their columns, kept in _rescued_data" in capsys.readouterr().out
