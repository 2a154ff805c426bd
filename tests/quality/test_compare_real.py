"""The real recover export published twice, the second time with one sleep
log's value changed, one sleep log removed and another added: ``compare``
finds exactly those three differences by key, and nothing else."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from bridge_downstream.publish.engine_steps import json_datasets
from bridge_downstream.quality.compare import CompareOptions, compare_storages
from bridge_downstream_cli.main import main
from project_paths import shared_path
from support import ingest_folder

pytestmark = pytest.mark.shared_data

EXPORT = "recover-2023-01-13T21--08--51Z_TESTDATA.zip"
SLEEP_LOGS = "FitbitSleepLogs_20230112-20230114.json"
ROOT = "dataset_fitbitsleeplogs"
DETAILS = "dataset_fitbitsleeplogs_sleeplogdetails"
ADDED_LOG_ID = "99999999999"


def _publish(archive: Path, root: Path, registry) -> Path:
    folder = root / "in"
    folder.mkdir(parents=True)
    (folder / EXPORT).symlink_to(archive)
    (folder / f"{EXPORT}.metadata.json").write_text(json.dumps({"cohort": "adults_v1"}))
    ingest_folder(folder, root / "out", registry, profile="recover")
    storage = LocalStorage(root / "out")
    for dataset_id in json_datasets(storage):
        publish_dataset_arrow(
            dataset_id=dataset_id,
            registry=registry,
            profile=load_profile("recover"),
            work=storage,
            published=storage,
            run_id="compare",
            catalog=None,
        )
    return root / "out"


def _edited_export(original: Path, target: Path) -> dict:
    """The export with its sleep logs edited; what was edited, by key.

    The added log takes the removed one's line: every other line keeps its
    place, so its ``sourceindex`` (the line's place in the file) is unchanged."""
    with zipfile.ZipFile(original) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    logs = [json.loads(line) for line in members[SLEEP_LOGS].decode().splitlines()]
    changed, removed = logs[0], logs[5]
    changed["Efficiency"] = "42"
    added = {**removed, "LogId": ADDED_LOG_ID}
    logs[5] = added
    members[SLEEP_LOGS] = "\n".join(json.dumps(log) for log in logs).encode() + b"\n"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    person = changed["ParticipantIdentifier"]
    return {
        "changed": (person, changed["LogId"]),
        "removed": (removed["ParticipantIdentifier"], removed["LogId"]),
        "added": (added["ParticipantIdentifier"], ADDED_LOG_ID),
        "removed_details": len(removed["SleepLogDetails"]),
    }


@pytest.fixture(scope="module")
def roots(tmp_path_factory, real_registry):
    original = shared_path("bridge-archives", EXPORT)
    work = tmp_path_factory.mktemp("compare-real")
    edited = _edited_export(original, work / "edited.zip")
    a = _publish(original, work / "a", real_registry)
    again = _publish(original, work / "again", real_registry)
    b = _publish(work / "edited.zip", work / "b", real_registry)
    return {"a": a, "again": again, "b": b, "edited": edited, "work": work}


def _keys(frame) -> list[tuple[str, str]]:
    return list(zip(frame["ParticipantIdentifier"], frame["LogId"], strict=True))


def test_identical_publishes_report_nothing_and_exit_0(roots, capsys):
    report = compare_storages(LocalStorage(roots["a"]), LocalStorage(roots["again"]))
    assert not report.differs
    assert len(report.tables) == 13  # every table of the 8 data types was compared
    assert all(t.rows_a == t.rows_b > 0 for t in report.tables)

    code = main(["compare", str(roots["a"]), str(roots["again"]), "--fail-on-diff"])
    assert code == 0
    assert "A and B hold the same data" in capsys.readouterr().out


def test_the_three_edits_are_reported_by_key_and_nothing_else(roots):
    edited = roots["edited"]
    report = compare_storages(LocalStorage(roots["a"]), LocalStorage(roots["b"]))
    assert report.differs
    assert (report.datasets_only_in_a, report.datasets_only_in_b) == ([], [])
    assert (report.tables_only_in_a, report.tables_only_in_b) == ([], [])
    differing = {t.table: t for t in report.tables if t.differs}
    assert set(differing) == {ROOT, DETAILS}

    root = differing[ROOT]
    assert root.join_columns == ["ParticipantIdentifier", "LogId"]
    assert (root.only_in_a_count, root.only_in_b_count) == (1, 1)
    assert _keys(root.only_in_a) == [edited["removed"]]
    assert _keys(root.only_in_b) == [edited["added"]]
    assert [c.column for c in root.changed] == ["Efficiency"]
    values = root.changed_values()
    assert list(zip(_keys(values), values["a"], values["b"], strict=True)) == [(edited["changed"], "95", "42")]
    assert (root.columns_only_in_a, root.columns_only_in_b, root.type_changes) == ([], [], {})

    # The removed and the added log's own detail rows, and no other: they are those logs' rows.
    details = differing[DETAILS]
    assert details.join_columns == ["id", "index"]
    assert details.only_in_a_count == details.only_in_b_count == edited["removed_details"] > 0
    assert set(_keys(details.only_in_a)) == {edited["removed"]}
    assert set(_keys(details.only_in_b)) == {edited["added"]}
    assert details.changed == []


def test_fail_on_diff_exits_1_and_writes_the_reports(roots):
    report_dir = roots["work"] / "report"
    code = main(["compare", str(roots["a"]), str(roots["b"]), "--fail-on-diff", "--report-dir", str(report_dir)])
    assert code == 1
    summary = (report_dir / "summary.txt").read_text()
    assert "1 rows only in A" in summary and f"LogId={ADDED_LOG_ID}" in summary
    html = (report_dir / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html and ADDED_LOG_ID in html
    with open(report_dir / "FitbitSleepLogs" / f"{ROOT}.changed.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["LogId"], r["column"], r["a"], r["b"]) for r in rows] == [
        (roots["edited"]["changed"][1], "Efficiency", "95", "42")
    ]
    with open(report_dir / "FitbitSleepLogs" / f"{ROOT}.only_in_b.csv", newline="") as stream:
        assert [r["LogId"] for r in csv.DictReader(stream)] == [ADDED_LOG_ID]


def test_tables_and_where_narrow_the_comparison(roots):
    a, b = LocalStorage(roots["a"]), LocalStorage(roots["b"])
    others = compare_storages(a, b, CompareOptions(tables=("FitbitDailyData", "EnrolledParticipants")))
    assert {t.dataset_id for t in others.tables} == {"FitbitDailyData", "EnrolledParticipants"}
    assert not others.differs

    changed_only = compare_storages(
        a, b, CompareOptions(tables=(ROOT,), where=f"LogId = '{roots['edited']['changed'][1]}'")
    )
    (root,) = changed_only.tables
    assert (root.rows_a, root.rows_b, root.only_in_a_count, root.only_in_b_count) == (1, 1, 0, 0)
    assert [c.column for c in root.changed] == ["Efficiency"]
