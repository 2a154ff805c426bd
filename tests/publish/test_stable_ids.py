"""Child tables carry their root row's natural key and partition columns, and
a record's ids come from that key: the same record in a later export, or
re-exported, keeps every id (docs/relationalize.md, "Ids")."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.engines import publish_dataset_with
from project_paths import shared_path
from support import SPELLING_ARCHIVE, SPELLING_METADATA, ingest_folder

pytestmark = pytest.mark.shared_data

RECOVER_EXPORT = "recover-2023-01-13T21--08--51Z_TESTDATA.zip"
SLEEP_MEMBER = "FitbitSleepLogs_20230112-20230114.json"
# A later export holding the same sleep logs: another file name and date
# (a later export end date, so its rows win dedup), the lines reversed.
LATER_SLEEP_MEMBER = "FitbitSleepLogs_20230120.json"
SLEEP_ROOT = "dataset_fitbitsleeplogs"
SLEEP_DETAILS = "dataset_fitbitsleeplogs_sleeplogdetails"
SHARED_ROOT = "dataset_sharedschema_v1"

ENGINES = ["arrow", pytest.param("spark", marks=pytest.mark.spark)]


# the columns of a table that hold ids: its own id and position, and its links
ID_ROLES = ("id", "index", "key", "link")


@pytest.fixture(params=ENGINES)
def publish(request, real_registry):
    """Ingests a folder of exports or archives into a new output and publishes
    one dataset of it on the engine of the test's parameter; returns
    ``(rows per table, id columns per table)``."""
    engine = request.param
    spark_factory = (lambda: request.getfixturevalue("spark")) if engine == "spark" else None

    def run(folder, dataset_id: str, profile: str):
        root = folder.parent / f"out-{folder.name}"
        ingest_folder(folder, root, real_registry, profile=profile)
        storage = LocalStorage(root)
        manifest = publish_dataset_with(
            engine,
            spark_factory,
            dataset_id=dataset_id,
            registry=real_registry,
            profile=load_profile(profile),
            work=storage,
            published=storage,
            run_id="stable-ids",
            catalog=None,
        ).manifest
        assert manifest.plan is not None
        id_columns = {
            table["name"]: [c["name"] for c in table["columns"] if c["role"] in ID_ROLES]
            for table in manifest.plan["tables"]
        }
        return {name: table_rows(root, table) for name, table in manifest.tables.items()}, id_columns

    return run


def table_rows(root, table) -> list[dict]:
    """Every row of a published table, its partition values (folder text) included."""
    rows = []
    for file in table.files_of("parquet"):
        for row in pq.read_table(io.BytesIO((root / file.key).read_bytes())).to_pylist():
            rows.append({**row, **file.partition})
    return rows


def add_export(folder, name: str, members: dict[str, bytes], metadata: dict) -> None:
    """A new archive of ``members`` in ``folder``, with its metadata sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / name, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    (folder / f"{name}.metadata.json").write_text(json.dumps(metadata))


def link_export(folder, source, metadata: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / source.name).symlink_to(source)
    (folder / f"{source.name}.metadata.json").write_text(json.dumps(metadata))


def all_ids(tables, id_columns) -> dict[str, list[tuple]]:
    """Per table, the sorted id, position and link values of its rows."""
    return {
        name: sorted((tuple(str(row[c]) for c in id_columns[name]) for row in rows), key=repr)
        for name, rows in tables.items()
    }


def sleep_ids(tables) -> tuple[dict, dict]:
    """Per LogId: the root row's link to its details, and its detail rows' (index, id)."""
    root = {row["LogId"]: row["SleepLogDetails"] for row in tables[SLEEP_ROOT]}
    details: dict[str, set] = {}
    for row in tables[SLEEP_DETAILS]:
        details.setdefault(row["LogId"], set()).add((row["index"], row["id"]))
    return root, details


def test_sleep_log_details_carry_log_id_and_keep_their_ids_in_a_later_export(publish, tmp_path):
    source = shared_path("bridge-archives", RECOVER_EXPORT)
    with zipfile.ZipFile(source) as archive:
        lines = [line for line in archive.read(SLEEP_MEMBER).splitlines() if line.strip()]
    logs = [json.loads(line) for line in lines]
    later = {LATER_SLEEP_MEMBER: b"\n".join(reversed(lines)) + b"\n"}
    later_export = "recover-2023-01-20T21--00--00Z_TESTDATA.zip"

    link_export(tmp_path / "first", source, {"cohort": "adults_v1"})
    first, id_columns = publish(tmp_path / "first", "FitbitSleepLogs", "recover")

    # The child table carries the root's key and partition column, which join
    # each detail row to its own log, the same row its id joins it to.
    details = first[SLEEP_DETAILS]
    assert len(details) == sum(len(log["SleepLogDetails"]) for log in logs)
    by_key = {(r["ParticipantIdentifier"], r["LogId"], r["cohort"]): r for r in first[SLEEP_ROOT]}
    assert len(by_key) == len(logs) == 12
    for row in details:
        assert row["id"] == by_key[(row["ParticipantIdentifier"], row["LogId"], row["cohort"])]["SleepLogDetails"]
    per_log: dict[str, int] = {}
    for row in details:
        per_log[row["LogId"]] = per_log.get(row["LogId"], 0) + 1
    assert per_log == {log["LogId"]: len(log["SleepLogDetails"]) for log in logs}
    # the ids are the natural key's, not the export file's and line's
    some = logs[0]
    assert by_key[(some["ParticipantIdentifier"], some["LogId"], "adults_v1")]["SleepLogDetails"] == (
        f"{some['ParticipantIdentifier']}|{some['LogId']}/SleepLogDetails"
    )

    # The same logs alone in a later export (another file, another order) ...
    add_export(tmp_path / "later", later_export, later, {"cohort": "adults_v1"})
    alone, _ = publish(tmp_path / "later", "FitbitSleepLogs", "recover")
    assert {r["sourcefile"] for r in alone[SLEEP_ROOT]} == {LATER_SLEEP_MEMBER}
    # ... and after the earlier export in the same output, where they replace its rows.
    link_export(tmp_path / "both", source, {"cohort": "adults_v1"})
    add_export(tmp_path / "both", later_export, later, {"cohort": "adults_v1"})
    both, _ = publish(tmp_path / "both", "FitbitSleepLogs", "recover")
    assert {r["sourcefile"] for r in both[SLEEP_ROOT]} == {LATER_SLEEP_MEMBER}

    expected = sleep_ids(first)
    assert len(expected[0]) == len(expected[1]) == 12
    assert sleep_ids(alone) == expected
    assert sleep_ids(both) == expected
    assert all_ids(alone, id_columns) == all_ids(both, id_columns) == all_ids(first, id_columns)


def test_mtb_grandchild_tables_carry_recordid_and_partitions_and_a_re_export_keeps_ids(publish, tmp_path):
    source = shared_path("bridge-archives", SPELLING_ARCHIVE)
    record = SPELLING_METADATA["recordid"]
    link_export(tmp_path / "first", source, SPELLING_METADATA)
    first, id_columns = publish(tmp_path / "first", "sharedSchema_v1", "mtb")

    parents = {name for name in first if any(other.startswith(f"{name}_") for other in first)}
    grandchildren = [
        name for name in first if first[name] and any(name.startswith(f"{p}_") for p in parents - {SHARED_ROOT})
    ]
    assert grandchildren, sorted(first)
    for name in grandchildren:
        for row in first[name]:
            assert row["recordid"] == record, name
            assert row["assessmentid"] == "spelling", name
            assert (int(row["year"]), int(row["month"]), int(row["day"])) == (2022, 2, 15), name
            assert row["id"].startswith(f"{record}|taskData.json|0/"), (name, row["id"])

    # A re-export of the record: the same members in another order, in an
    # archive of another name, exported later; it replaces the first version.
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in reversed(archive.namelist())}
    link_export(tmp_path / "both", source, SPELLING_METADATA)
    add_export(
        tmp_path / "both",
        f"re-export-{SPELLING_ARCHIVE}",
        members,
        {**SPELLING_METADATA, "exportedon": "2022-03-01T00:00:00Z"},
    )
    both, _ = publish(tmp_path / "both", "sharedSchema_v1", "mtb")
    assert [r["exportedon"] for r in both[SHARED_ROOT]] == [datetime(2022, 3, 1, tzinfo=UTC)]
    assert all_ids(both, id_columns) == all_ids(first, id_columns)
