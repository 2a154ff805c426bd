"""status attributes each invalid record to the dataset its failed files
belong to; records that failed before bucketing are counted apart, and the
counts add up to the output's invalid records (issue 24, item 9)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from bridge_downstream.config import load_profile
from bridge_downstream.replay import entry_datasets
from bridge_downstream_cli.exit_codes import ExitCode
from bridge_downstream_cli.main import main
from support import SAMPLES, build_sample_registry

VALID = SAMPLES / "archives" / "rec-0001-number-match.zip"


def _member(name: str) -> bytes:
    with zipfile.ZipFile(VALID) as archive:
        return archive.read(name)


def _archive(folder: Path, record_id: str, replaced: dict[str, object], sidecar: bool = True) -> None:
    """rec-0001's files, some replaced, under a record id of its own."""
    path = folder / f"{record_id}.zip"
    with zipfile.ZipFile(VALID) as source, zipfile.ZipFile(path, "w") as archive:
        for name in source.namelist():
            content = replaced.get(name, source.read(name))
            archive.writestr(name, content if isinstance(content, bytes) else json.dumps(content))
    if sidecar:
        metadata = json.loads(Path(f"{VALID}.metadata.json").read_text()) | {"recordid": record_id}
        Path(f"{path}.metadata.json").write_text(json.dumps(metadata))


@pytest.fixture(scope="module")
def output(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("status-invalid")
    registry = root / "registry"
    build_sample_registry(registry)
    archives = root / "archives"
    archives.mkdir()
    task = json.loads(_member("taskData.json"))
    slow_task = task | {"steps": [step | {"responseTime": "slow"} for step in task["steps"]]}
    motion = json.loads(_member("motion.json"))
    _archive(archives, "good", {})
    _archive(archives, "bad-task-1", {"taskData.json": slow_task})  # TaskData_v1
    _archive(archives, "bad-task-2", {"taskData.json": slow_task | {"taskRunUUID": "other"}})  # TaskData_v1
    _archive(archives, "bad-motion", {"motion.json": [{**motion[0], "timestamp": "early"}]})  # MotionRecord_v1
    _archive(archives, "no-metadata", {"info.json": {"n": 1}}, sidecar=False)  # before bucketing
    out = root / "out"
    argv = ["run", str(archives), "--registry", str(registry), "--output", str(out), "--no-progress"]
    assert main(argv) == ExitCode.INVALID
    return out


def test_status_json_counts_invalid_records_per_dataset(output, capsys):
    assert main(["status", "--output", str(output), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)

    assert status["invalid"] == 4
    assert status["datasets"]["TaskData_v1"]["invalid"] == 2
    assert status["datasets"]["MotionRecord_v1"]["invalid"] == 1
    assert status["invalid_not_attributable"] == 1
    assert {d: e["invalid"] for d, e in status["datasets"].items() if e["invalid"]} == {
        "TaskData_v1": 2,
        "MotionRecord_v1": 1,
    }
    assert sum(e["invalid"] for e in status["datasets"].values()) + status["invalid_not_attributable"] == 4
    assert status["invalid_note"] is None


def test_status_table_shows_the_same_counts(output, capsys):
    assert main(["status", "--output", str(output)]) == 0
    lines = capsys.readouterr().out.splitlines()

    def invalid_column(dataset_id: str) -> int:
        (line,) = [line for line in lines if line.split()[:1] == [dataset_id]]
        return int(line.split()[4])

    assert invalid_column("TaskData_v1") == 2
    assert invalid_column("MotionRecord_v1") == 1
    assert invalid_column("ArchiveMetadata_v1") == 0
    assert "invalid records: 4 (bridge-downstream invalid list --output ...)" in lines
    assert "  not attributable to a dataset: 1" in lines


def test_without_a_readable_registry_nothing_is_attributed_and_it_says_why(output, tmp_path, capsys):
    import shutil

    copy = tmp_path / "out"
    shutil.copytree(output, copy)
    record = json.loads((copy / "pipeline.json").read_text())
    (copy / "pipeline.json").write_text(json.dumps(record | {"registry": str(tmp_path / "gone")}))

    assert main(["status", "--output", str(copy), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)

    assert status["invalid"] == status["invalid_not_attributable"] == 4
    assert "registry cannot be read" in status["invalid_note"]


def test_an_export_file_names_its_dataset():
    recover = load_profile("recover")
    entry = {"validation_result": {"errors": {"FitbitSleepLogs_20230101-20230102.json": ["line 3: ..."]}}}
    assert entry_datasets(entry, recover, None) == {"FitbitSleepLogs"}
    assert entry_datasets({"validation_result": {"errors": {"archive": ["no cohort"]}}}, recover, None) == set()
