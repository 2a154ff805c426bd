"""The run report lists every published dataset's record counts (recover's grain)."""

from __future__ import annotations

import json

from bridge_downstream_cli.main import main
from support import SAMPLES, build_sample_registry


def test_run_report_holds_the_record_counts_of_every_dataset(tmp_path):
    registry = tmp_path / "registry"
    build_sample_registry(registry)
    output = tmp_path / "out"
    arguments = ["run", str(SAMPLES / "exports"), "--registry", str(registry), "--output", str(output)]
    assert main([*arguments, "--profile", "recover", "--engine", "arrow", "--no-progress"]) == 0
    report = json.loads((output / "run-report.json").read_text())
    counts = report["record_counts"]
    assert {c["data_type"] for c in counts} == set(report["published"])
    for c in counts:
        assert c["read"] == c["duplicates_dropped"] + c["deleted_dropped"] + c["written"] > 0
    written = {}
    for c in counts:
        written[c["data_type"]] = written.get(c["data_type"], 0) + c["written"]
    roots = {
        t["dataset"]: t["rows"] for name, t in report["tables"].items() if name == f"dataset_{t['dataset'].lower()}"
    }
    assert written == roots
    assert any(c["deleted_dropped"] for c in counts)  # the sample export deletes a record
