"""Per dataset and export end date, the records a publish read, dropped as
duplicates, dropped as deleted and wrote (recover's record counts), in the
manifest and as a CSV beside the version, the same on both engines."""

from __future__ import annotations

import csv
import io
import json

import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.ingest.ndjson_export import EXPORT_END_DATE
from bridge_downstream.publish.engine_steps import EXPORT_END_DATE_FIELD, RECORD_COUNTS_NAME
from bridge_downstream.publish.engines import publish_dataset_with
from bridge_downstream.publish.manifest import RECORD_COUNT_FIELDS

ENGINES = ["arrow", pytest.param("spark", marks=pytest.mark.spark)]

DATASET = "FitbitDevices"  # key [ParticipantIdentifier, Date, Device]
PARTITION = {"cohort": "adults_v1"}
FIRST_EXPORT, SECOND_EXPORT = "2024-01-04T00:00:00Z", "2024-01-11T00:00:00Z"


def device_row(participant: str, inserted: str, exported: str, index: int) -> dict:
    return {
        "ParticipantIdentifier": participant,
        "Device": "Versa",
        "Date": "2024-01-01",
        "InsertedDate": inserted,
        "cohort": "adults_v1",
        "export_start_date": "2024-01-01T00:00:00Z",
        "export_end_date": exported,
        "sourcefile": f"FitbitDevices_{exported[:10]}.json",
        "sourceindex": index,
    }


def write_part(root, dataset_id: str, name: str, rows: list[dict]) -> None:
    path = root / layout.json_part_key(dataset_id, PARTITION, name, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def two_exports(root) -> None:
    """P1 is in both exports, twice in the first, latest in the second; P3 and
    P4 are deleted by the second export's _Deleted file."""
    write_part(
        root,
        DATASET,
        "first",
        [
            device_row("P1", "2024-01-02T00:00:00Z", FIRST_EXPORT, 0),
            device_row("P1", "2024-01-03T00:00:00Z", FIRST_EXPORT, 1),
            device_row("P2", "2024-01-02T00:00:00Z", FIRST_EXPORT, 2),
            device_row("P3", "2024-01-02T00:00:00Z", FIRST_EXPORT, 3),
        ],
    )
    write_part(
        root,
        DATASET,
        "second",
        [
            device_row("P1", "2024-01-09T00:00:00Z", SECOND_EXPORT, 0),
            device_row("P4", "2024-01-09T00:00:00Z", SECOND_EXPORT, 1),
        ],
    )
    deleted = [
        {"ParticipantIdentifier": p, "Device": "Versa", "Date": "2024-01-01", "export_end_date": SECOND_EXPORT}
        for p in ("P3", "P4")
    ]
    write_part(root, DATASET + "_Deleted", "second", deleted)


EXPECTED = [
    {
        "data_type": DATASET,
        "export_end_date": FIRST_EXPORT,
        "read": 4,
        "duplicates_dropped": 2,
        "deleted_dropped": 1,
        "written": 1,
    },
    {
        "data_type": DATASET,
        "export_end_date": SECOND_EXPORT,
        "read": 2,
        "duplicates_dropped": 0,
        "deleted_dropped": 1,
        "written": 1,
    },
]


def publish(engine: str, request, registry, root, dataset_id: str = DATASET):
    storage = LocalStorage(root)
    published = LocalStorage(root / f"published-{engine}")
    manifest = publish_dataset_with(
        engine,
        lambda: request.getfixturevalue("spark"),
        dataset_id=dataset_id,
        registry=registry,
        profile=load_profile("recover"),
        work=storage,
        published=published,
        run_id="counts",
        catalog=None,
    ).manifest
    return manifest, published


def csv_counts(published: LocalStorage, manifest) -> list[dict]:
    key = f"{layout.version_prefix(manifest.dataset_id, manifest.version)}/{RECORD_COUNTS_NAME}"
    rows = list(csv.DictReader(io.StringIO(published.read_bytes(key).decode())))
    assert rows and list(rows[0]) == list(RECORD_COUNT_FIELDS)
    return [
        {name: value if name in ("data_type", "export_end_date") else int(value) for name, value in row.items()}
        for row in rows
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_counts_per_export_add_up_and_are_written_beside_the_version(engine, request, registry, tmp_path):
    two_exports(tmp_path)
    manifest, published = publish(engine, request, registry, tmp_path)
    assert manifest.record_counts == EXPECTED
    for counts in manifest.record_counts:
        assert counts["read"] == counts["duplicates_dropped"] + counts["deleted_dropped"] + counts["written"]
    root = next(t for t in manifest.tables.values() if t.parent is None)
    assert root.rows == sum(c["written"] for c in manifest.record_counts) == 2
    assert csv_counts(published, manifest) == EXPECTED


@pytest.mark.parametrize("engine", ENGINES)
def test_a_dataset_without_key_writes_what_it_read(engine, request, registry, tmp_path):
    rows = [device_row("P1", "2024-01-02T00:00:00Z", FIRST_EXPORT, i) for i in range(3)]
    write_part(tmp_path, "FitbitNoKeyProbe", "first", rows)  # no dedup key in the profile
    manifest, _ = publish(engine, request, registry, tmp_path, "FitbitNoKeyProbe")
    assert manifest.record_counts == [
        {
            "data_type": "FitbitNoKeyProbe",
            "export_end_date": FIRST_EXPORT,
            "read": 3,
            "duplicates_dropped": 0,
            "deleted_dropped": 0,
            "written": 3,
        }
    ]


@pytest.mark.spark
def test_both_engines_count_the_same(request, registry, tmp_path):
    two_exports(tmp_path)
    arrow, _ = publish("arrow", request, registry, tmp_path)
    spark, _ = publish("spark", request, registry, tmp_path)
    deleted_arrow, _ = publish("arrow", request, registry, tmp_path, DATASET + "_Deleted")
    deleted_spark, _ = publish("spark", request, registry, tmp_path, DATASET + "_Deleted")
    assert arrow.record_counts == spark.record_counts == EXPECTED
    assert deleted_arrow.record_counts == deleted_spark.record_counts
    assert [c["read"] for c in deleted_arrow.record_counts] == [2]


def test_counts_are_grouped_by_the_export_end_date_ingest_writes():
    assert EXPORT_END_DATE_FIELD == EXPORT_END_DATE
