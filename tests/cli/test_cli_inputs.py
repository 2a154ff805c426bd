"""The command line's inputs: an entry that is no regular file (a FIFO, a
dangling or looping link), found in a folder or named directly, is reported
as skipped with its reason while the others are ingested; and a partition
value holding ``/`` or ``=`` reads back as itself through ``query``."""

from __future__ import annotations

import json
import os
import shutil
import threading
import zipfile
from pathlib import Path

import pytest

from bridge_downstream_cli.errors import UsageError
from bridge_downstream_cli.main import main
from bridge_downstream_cli.pipeline_commands import discover_archives
from support import SAMPLES, build_sample_registry

GOOD = SAMPLES / "archives" / "rec-0001-number-match.zip"
FIFO = "a FIFO (named pipe), not a regular file: reading it could wait for ever"
DANGLING = "a symbolic link whose target does not exist"
LOOP = "a symbolic link that loops (it leads back to itself)"


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-inputs") / "registry"
    build_sample_registry(out)
    return out


def finished_within(seconds: float, work):
    result: list = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the command waited on an input (a FIFO opened?)"
    return result[0]


def inputs_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(GOOD, folder / "good.zip")
    shutil.copy(f"{GOOD}.metadata.json", folder / "good.zip.metadata.json")
    os.mkfifo(folder / "pipe.zip")
    (folder / "gone.zip").symlink_to("nowhere.zip")
    (folder / "loop.zip").symlink_to("loop.zip")
    return folder


def test_named_entries_are_judged_as_listed_ones(tmp_path):
    folder = inputs_folder(tmp_path)
    names = ["pipe.zip", "gone.zip", "loop.zip", "good.zip"]
    inputs = finished_within(10, lambda: list(discover_archives([str(folder / name) for name in names])))
    assert [(inp.key, inp.refused) for inp in inputs] == [
        ("pipe.zip", FIFO),
        ("gone.zip", DANGLING),
        ("loop.zip", LOOP),
        ("good.zip", None),
    ]
    listed = finished_within(10, lambda: list(discover_archives([str(folder)])))
    assert sorted((inp.key, inp.refused) for inp in listed) == sorted((inp.key, inp.refused) for inp in inputs)
    with pytest.raises(UsageError, match="does not exist"):
        discover_archives([str(folder / "missing.zip")])


@pytest.mark.parametrize("named", [False, True], ids=["folder", "named"])
def test_ingest_reports_what_it_cannot_read_and_ingests_the_rest(registry_dir, tmp_path, capsys, named):
    folder = inputs_folder(tmp_path)
    inputs = (
        [str(folder / name) for name in sorted(os.listdir(folder)) if name.endswith(".zip")] if named else [str(folder)]
    )
    arguments = ["ingest", *inputs, "--registry", str(registry_dir), "--output", str(tmp_path / "out"), "--no-progress"]
    assert finished_within(120, lambda: main(arguments)) == 0
    printed = capsys.readouterr().out
    assert "4 archives -- 1 processed, 0 invalid, 3 skipped" in printed
    for name, reason in [("pipe.zip", FIFO), ("gone.zip", DANGLING), ("loop.zip", LOOP)]:
        assert f"skipped  file://{folder.resolve()}/{name}: {reason}" in printed
    report = json.loads((tmp_path / "out" / "run-report.json").read_text())
    assert report["datasets"]["TaskData_v1"]["records"] == 1


def test_a_value_with_slash_and_equals_reads_back_through_query(registry_dir, tmp_path, capsys):
    cohorts = ["a/b=c%", "../up", "plain"]
    for number, cohort in enumerate(cohorts):
        path = tmp_path / "in" / f"export-{number}.zip"
        path.parent.mkdir(exist_ok=True)
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("Custom_20240101.json", json.dumps({"ParticipantIdentifier": "p", "n": number}) + "\n")
        Path(f"{path}.metadata.json").write_text(json.dumps({"cohort": cohort}))
    output = tmp_path / "out"
    common = ["--registry", str(registry_dir), "--output", str(output), "--profile", "recover", "--no-progress"]
    assert main(["run", str(tmp_path / "in"), *common, "--engine", "arrow"]) == 0
    capsys.readouterr()
    sql = "SELECT string_agg(cohort || ':' || n, ' | ' ORDER BY n) AS seen FROM dataset_custom"
    assert main(["query", "--output", str(output), sql]) == 0
    assert "a/b=c%:0 | ../up:1 | plain:2" in capsys.readouterr().out
    assert (output / "json" / "dataset=Custom" / "cohort=a%2Fb%3Dc%25").is_dir()
