"""locate on a recover output: rows are found by participant (through each
version's key index) and by export archive, not by record id (issue 24, item 10)."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from bridge_downstream_cli.exit_codes import ExitCode
from bridge_downstream_cli.main import main
from support import SAMPLES

FIRST = "export-2024-01-05T03--00--00Z_SAMPLE"
SECOND = "export-2024-01-10T03--00--00Z_SAMPLE"
SLEEP_FILE = "FitbitSleepLogs_20240106-20240110.json"
# RX-0002's first sleep log again, inserted later (it supersedes the first
# export's row), and a participant only this export holds.
SECOND_SLEEP_LOGS = [
    {
        "ParticipantIdentifier": "RX-0002",
        "LogId": "RX-0002-sleep-0",
        "StartDate": "2024-01-01T22:00:00",
        "Duration": "30000000",
        "InsertedDate": "2024-01-10T03:00:00Z",
        "SleepLogDetails": [{"Type": "stage", "StartDate": "2024-01-01T22:00:00", "Value": "deep"}],
    },
    {
        "ParticipantIdentifier": "RX-0003",
        "LogId": "RX-0003-sleep-0",
        "StartDate": "2024-01-08T22:00:00",
        "Duration": "25000000",
        "InsertedDate": "2024-01-10T03:00:00Z",
        "SleepLogDetails": [],
    },
]


@pytest.fixture(scope="module")
def recover_output(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("locate-recover")
    exports = root / "exports"
    exports.mkdir()
    for path in (SAMPLES / "exports").iterdir():
        shutil.copy(path, exports / path.name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Manifest.csv", "ExportStartDate,ExportEndDate,FitbitSleepLogs\n2024-01-06,2024-01-10,2\n")
        archive.writestr(SLEEP_FILE, "".join(json.dumps(row) + "\n" for row in SECOND_SLEEP_LOGS))
    (exports / f"{SECOND}.zip").write_bytes(buffer.getvalue())
    (exports / f"{SECOND}.zip.metadata.json").write_text('{"cohort": "adults_v1"}')
    output = root / "out"
    argv = ["run", str(exports), "--profile", "recover", "--output", str(output), "--no-progress"]
    assert main(argv) == ExitCode.OK
    return output


def locate_json(capsys, output: Path, *argv: str) -> dict:
    capsys.readouterr()
    assert main(["locate", *argv, "--output", str(output), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def root_rows(found: dict) -> dict[str, int]:
    return {
        dataset: next(iter(entry["tables"].values()))["rows"]
        for dataset, entry in found["published"].items()
        if entry.get("tables")
    }


def test_a_participant_is_found_in_every_dataset_holding_its_rows(recover_output, capsys):
    found = locate_json(capsys, recover_output, "--participant", "RX-0001")

    assert root_rows(found) == {
        "FitbitIntradayCombined": 30,
        "FitbitSleepLogs": 2,
        "HealthKitV2Samples": 4,  # 5 samples, hk-3 deleted by the export's _Deleted file
        "HealthKitV2Samples_Deleted": 1,
    }
    assert found["published"]["FitbitSleepLogs"]["tables"]["dataset_fitbitsleeplogs_sleeplogdetails"]["rows"] == 5
    assert all("key index" in entry["index"] for entry in found["published"].values())


def test_the_key_index_spares_the_datasets_a_participant_is_not_in(recover_output, tmp_path, capsys):
    copy = tmp_path / "out"
    shutil.copytree(recover_output, copy)
    # Only the index can tell these datasets hold no RX-0003 row now: their Parquet is gone.
    for dataset in ("FitbitIntradayCombined", "HealthKitV2Samples", "HealthKitV2Samples_Deleted"):
        for parquet in (copy / "published" / dataset).rglob("*.parquet"):
            if "index" not in parquet.parts:
                parquet.unlink()

    found = locate_json(capsys, copy, "--participant", "RX-0003", "--rows")

    assert root_rows(found) == {"FitbitSleepLogs": 1}
    (row,) = found["published"]["FitbitSleepLogs"]["tables"]["dataset_fitbitsleeplogs"]["row_values"]
    assert row["LogId"] == "RX-0003-sleep-0" and row["sourcefile"] == SLEEP_FILE


def test_an_export_gives_its_runs_and_the_rows_of_it_still_current(recover_output, capsys):
    found = locate_json(capsys, recover_output, "--export", f"{FIRST}.zip")

    (archive,) = found["archives"]
    assert archive["status"] == "processed" and archive["source"].endswith(f"/{FIRST}.zip")
    assert archive["datasets"]["FitbitSleepLogs"] == 4
    assert root_rows(found)["FitbitSleepLogs"] == 3  # RX-0002-sleep-0 superseded by the second export
    assert found["published"]["FitbitSleepLogs"]["dedup"].startswith("3 of the 4 rows ingested from it are current")
    assert root_rows(found)["FitbitIntradayCombined"] == 60


def test_participant_and_export_together_give_that_exports_rows_of_the_participant(recover_output, capsys):
    found = locate_json(capsys, recover_output, "--participant", "RX-0002", "--export", SECOND, "--rows")

    assert root_rows(found) == {"FitbitSleepLogs": 1}
    (row,) = found["published"]["FitbitSleepLogs"]["tables"]["dataset_fitbitsleeplogs"]["row_values"]
    assert (row["LogId"], row["Duration"], row["sourcefile"]) == ("RX-0002-sleep-0", "30000000", SLEEP_FILE)


def test_the_text_form_and_what_is_not_found(recover_output, capsys):
    capsys.readouterr()
    assert main(["locate", "--participant", "RX-0003", "--output", str(recover_output)]) == 0
    out = capsys.readouterr().out
    assert "participant RX-0003: 1 datasets" in out
    assert "    dataset_fitbitsleeplogs: 1 rows" in out

    assert main(["locate", "--participant", "RX-9999", "--output", str(recover_output)]) == 1
    assert "participant RX-9999: no current version holds a row of it" in capsys.readouterr().out
    assert main(["locate", "--export", "no-such-export.zip", "--output", str(recover_output)]) == 1
    assert main(["locate", "--output", str(recover_output)]) == ExitCode.USAGE
    assert "give a RECORD_ID, or --participant ID" in capsys.readouterr().err


REAL_EXPORT = "recover-2023-01-13T21--08--51Z_TESTDATA.zip"
REAL_PARTICIPANT = "MDH-9157-0325"


def _expected_root_rows(export: Path, participant: str) -> dict[str, int]:
    """The participant's rows per dataset, read from the export itself: one per record key where the data type has one."""
    from bridge_downstream.config import load_profile
    from bridge_downstream.ingest import export_dataset_id

    profile = load_profile("recover")
    keys: dict[str, set] = {}
    counts: dict[str, int] = {}
    with zipfile.ZipFile(export) as archive:
        for name in archive.namelist():
            dataset = export_dataset_id(name, profile.subtype_data_types)
            if dataset is None:
                continue
            key = profile.dedup.key_for(dataset)
            for line in archive.read(name).decode().splitlines():
                row = json.loads(line) if line.strip() else {}
                if row.get("ParticipantIdentifier") != participant:
                    continue
                if key:
                    keys.setdefault(dataset, set()).add(tuple(row.get(field) for field in key))
                else:
                    counts[dataset] = counts.get(dataset, 0) + 1
    return counts | {dataset: len(found) for dataset, found in keys.items()}


@pytest.mark.shared_data
def test_a_participant_of_the_real_recover_export_is_located(tmp_path, capsys):
    from project_paths import shared_path

    export = shared_path("bridge-archives", REAL_EXPORT)
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(export, folder / REAL_EXPORT)
    output = tmp_path / "out"
    argv = ["run", str(folder), "--profile", "recover", "--output", str(output), "--no-progress"]
    assert main(argv) == ExitCode.OK

    found = locate_json(capsys, output, "--participant", REAL_PARTICIPANT)

    expected = _expected_root_rows(export, REAL_PARTICIPANT)
    assert expected and sum(expected.values()) > 1
    assert root_rows(found) == expected
    assert "FitbitIntradayCombined" not in found["published"]  # another participant's: its index says so


def test_a_record_id_on_a_recover_output_points_to_the_participant_and_export_forms(recover_output, capsys):
    capsys.readouterr()
    assert main(["locate", "RX-0001", "--output", str(recover_output)]) == 1
    assert "has no record ids: locate --participant ID or --export NAME" in capsys.readouterr().out
