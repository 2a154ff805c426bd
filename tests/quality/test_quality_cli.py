"""The quality checks on the command line: ``run`` exits with the invalid-data
code when a ``block`` expectation fails (and makes nothing current), and
``bridge-downstream quality OUTPUT`` checks the current versions on demand."""

from __future__ import annotations

import json

import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish.manifest import current_version, published_datasets
from bridge_downstream_cli.exit_codes import ExitCode
from bridge_downstream_cli.main import main
from support import write_archive

DATASET = "FitbitSleepLogs"
BLOCKING = (
    "expectations:\n  FitbitSleepLogs:\n    root:\n"
    "      - {kind: between, column: MinutesAsleep, min: 0, max: 1440, policy: block}\n"
)


def export(tmp_path, minutes: list[str]):
    rows = [
        {"ParticipantIdentifier": "RX-1", "LogId": f"log-{n}", "MinutesAsleep": value, "InsertedDate": "2024-01-05"}
        for n, value in enumerate(minutes)
    ]
    folder = tmp_path / "in"
    write_archive(
        folder / "recover-export.zip",
        {f"{DATASET}_20240101-20240105.json": "\n".join(json.dumps(r) for r in rows) + "\n"},
        metadata={"cohort": "adults_v1"},
    )
    return folder


def test_run_exits_invalid_when_a_block_expectation_fails(tmp_path, capsys):
    study = tmp_path / "study.yaml"
    study.write_text(BLOCKING)
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(export(tmp_path, ["400", "9000"])),
            "--output",
            str(out),
            "--profile",
            "recover",
            "--expectations",
            str(study),
            "--no-progress",
        ]
    )
    assert code == ExitCode.INVALID
    assert current_version(LocalStorage(out), DATASET) is None  # no earlier version: none is current
    printed = capsys.readouterr().out
    assert "BLOCKED" in printed and '"LogId": "log-1"' in printed
    report = json.loads((out / "run-report.json").read_text())
    assert report["quality_failures"][DATASET]["blocked"] is True


def test_quality_checks_the_current_versions_on_demand(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        ["run", str(export(tmp_path, ["400", "9000"])), "--output", str(out), "--profile", "recover", "--no-progress"]
    )
    assert code == ExitCode.OK  # recover's own expectation is a warning
    assert published_datasets(LocalStorage(out)) == [DATASET]
    capsys.readouterr()

    assert main(["quality", str(out)]) == ExitCode.OK
    printed = capsys.readouterr().out
    assert "checked 1 datasets: 0 passed" in printed and "MinutesAsleep between 0 and 1440: 1" in printed

    study = tmp_path / "study.yaml"
    study.write_text(BLOCKING)
    assert main(["quality", str(out), "--dataset", DATASET, "--expectations", str(study)]) == ExitCode.INVALID
    [html] = sorted((out / "reports" / "quality").glob("*.html"))[-1:]
    assert "log-1" in html.read_text()


class _SharedSession:
    """The test session, which the command's ``stop()`` must not end."""

    def __init__(self, spark):
        self._spark = spark
        self.stopped = False

    def __getattr__(self, name):
        return getattr(self._spark, name)

    def stop(self):
        self.stopped = True


@pytest.mark.spark
def test_quality_on_the_spark_engine_finds_what_pandas_finds(tmp_path, capsys, spark, monkeypatch):
    out = tmp_path / "out"
    run = ["run", str(export(tmp_path, ["400", "9000"])), "--output", str(out), "--profile", "recover", "--no-progress"]
    assert main(run) == ExitCode.OK
    capsys.readouterr()
    session = _SharedSession(spark)
    monkeypatch.setattr("bridge_downstream.publish.local_spark_session", lambda **_: session)
    printed = {}
    for engine in ("arrow", "spark"):
        assert main(["quality", str(out), "--engine", engine]) == ExitCode.OK
        printed[engine] = capsys.readouterr().out
    assert session.stopped  # the command ends the session it started
    assert "checked 1 datasets: 0 passed" in printed["spark"]
    assert "MinutesAsleep between 0 and 1440: 1" in printed["spark"]
    findings = {engine: [line.split("file://")[0] for line in text.splitlines()] for engine, text in printed.items()}
    assert findings["spark"] == findings["arrow"] and any('"LogId": "log-1"' in line for line in findings["spark"])
