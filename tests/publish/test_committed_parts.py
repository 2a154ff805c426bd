"""Both publish engines read only the part files readers may take: none that
only an ingest run without commit record claims, the ``_Deleted`` companion's
included; part files no run claims (written before claims existed, or by
hand) are read as ever."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from bridge_downstream.common import run_commits
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.engine_steps import json_datasets
from bridge_downstream.publish.engines import publish_dataset_with

ENRICHMENT = {
    "exportstartdate": "2024-01-01",
    "exportenddate": "2024-01-04",
    "sourcefile": "FitbitDevices_20240104.json",
}


def part(storage, dataset_id: str, cohort: str, name: str, participants: list[str]) -> tuple[str, bytes]:
    rows = [
        {
            "ParticipantIdentifier": participant,
            "Device": "Versa",
            "Date": "2024-01-01",
            "InsertedDate": "2024-01-02T00:00:00Z",
            "cohort": cohort,
            "sourceindex": index,
            **ENRICHMENT,
        }
        for index, participant in enumerate(participants)
    ]
    key = f"json/dataset={dataset_id}/cohort={cohort}/part-{name}-00000.ndjson"
    return key, "".join(json.dumps(row) + "\n" for row in rows).encode()


def published_participants(engine, request, registry, work, tmp_path, publish: str) -> list[tuple[str, str]]:
    published = LocalStorage(tmp_path / publish)
    manifest = publish_dataset_with(
        engine,
        (lambda: request.getfixturevalue("spark")) if engine == "spark" else None,
        dataset_id="FitbitDevices",
        registry=registry,
        profile=load_profile("recover"),
        work=work,
        published=published,
        run_id=publish,
    ).manifest
    rows = []
    for file in manifest.tables["dataset_fitbitdevices"].files_of("parquet"):
        table = pq.read_table(io.BytesIO(published.read_bytes(file.key)))
        rows += [
            (participant, file.partition["cohort"]) for participant in table.column("ParticipantIdentifier").to_pylist()
        ]
    return sorted(rows)


@pytest.mark.parametrize("engine", ["arrow", pytest.param("spark", marks=pytest.mark.spark)])
def test_part_files_of_runs_without_commit_are_never_read(engine, request, registry, tmp_path):
    work = LocalStorage(tmp_path / "work")
    finished, killed = (run_commits.ClaimingStorage(work, run) for run in ("run-finished", "run-killed"))
    work.write_bytes(*part(work, "FitbitDevices", "adults_v1", "by-hand", ["p1"]))
    finished.write_bytes(*part(work, "FitbitDevices", "adults_v1", "finished", ["p2"]))
    killed.write_bytes(*part(work, "FitbitDevices", "adults_v1", "killed", ["p3"]))
    # A folder whose name Hadoop would read as a pattern: Spark is given each file by its name.
    work.write_bytes(*part(work, "FitbitDevices", "a}b{c[d]*", "by-hand", ["p4"]))
    # The killed run also deleted p1: not while it has not committed.
    deleted_key, deleted = part(work, "FitbitDevices_Deleted", "adults_v1", "killed", ["p1"])
    killed.write_bytes(deleted_key, deleted)
    run_commits.commit(work, "run-finished", {})
    assert json_datasets(work) == ["FitbitDevices"]

    first = published_participants(engine, request, registry, work, tmp_path, "first")
    assert first == [("p1", "adults_v1"), ("p2", "adults_v1"), ("p4", "a}b{c[d]*")]

    run_commits.commit(work, "run-killed", {})  # as if it had finished after all
    assert json_datasets(work) == ["FitbitDevices", "FitbitDevices_Deleted"]
    second = published_participants(engine, request, registry, work, tmp_path, "second")
    assert second == [("p2", "adults_v1"), ("p3", "adults_v1"), ("p4", "a}b{c[d]*")]
