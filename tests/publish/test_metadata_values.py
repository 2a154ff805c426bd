"""Metadata is data, never a path, from ingest to the catalogs: hostile
``assessmentid``, ``cohort`` and ``recordid`` values land in their own escaped
folders (never another dataset's, never outside the root), read back as
themselves in the manifest, the CSVs, DuckDB and the Glue catalog, and both
engines name the folders identically. What no storage can hold makes its
archive invalid, and the rest of the batch is processed."""

from __future__ import annotations

import csv
import io
import json
import posixpath
import shutil
import zipfile
from pathlib import Path

import boto3
import duckdb
import pytest
from moto import mock_aws

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from bridge_downstream.publish.catalog import DuckDBCatalog
from bridge_downstream.publish.manifest import PublishManifest
from bridge_downstream_adapters.glue_catalog import GlueCatalog
from support import SAMPLES, ingest_folder, invalid_entries, read_dataset

# The cohorts of the exports: each its own partition, whatever it holds.
COHORTS = ["../../up", "a/b=c%", ".hidden", "..", "q?*#'\"{[^]}\\:", "tab\there", "é ü+", "%2F", "adults_v1"]
DATASET = "Custom"  # a data type without a dedup key: every row is kept
TABLE = "dataset_custom"


def write_export(path: Path, cohort: str, rows: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        lines = [json.dumps({"ParticipantIdentifier": f"p{i}", "cohortSeen": cohort, "n": i}) for i in range(rows)]
        archive.writestr(f"{DATASET}_20240101.json", "\n".join(lines) + "\n")
    Path(f"{path}.metadata.json").write_text(json.dumps({"cohort": cohort}))


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def exports_ingested(registry, tmp_path_factory):
    """Exports of every hostile cohort ingested (recover): (the run's folder, its report)."""
    base = tmp_path_factory.mktemp("hostile-cohorts")
    for number, cohort in enumerate(COHORTS):
        write_export(base / "in" / f"export-{number:02d}.zip", cohort)
    report = ingest_folder(base / "in", base / "work", registry, profile="recover")
    return base, report


def test_hostile_cohorts_land_in_their_own_escaped_folders(exports_ingested):
    base, report = exports_ingested
    assert report["archives"] == {"total": len(COHORTS), "processed": len(COHORTS), "invalid": 0, "skipped": 0}
    work = base / "work"
    parts = [key for key in files_under(work) if key.endswith(".ndjson")]
    assert len(parts) == len(COHORTS)
    folders = {posixpath.dirname(key) for key in parts}
    assert folders == {f"json/dataset={DATASET}/{layout.partition_segment('cohort', c)}" for c in COHORTS}
    # Every part file reads back to its own cohort, and its rows say so.
    for key in parts:
        (cohort,) = layout.parse_partition_path(posixpath.dirname(key)[len(f"json/dataset={DATASET}/") :]).values()
        rows = [json.loads(line) for line in (work / key).read_text().splitlines()]
        assert {(r["cohort"], r["cohortSeen"]) for r in rows} == {(cohort, cohort)} and len(rows) == 2
    assert files_under(base) == sorted(
        [f"in/{p.name}" for p in (base / "in").iterdir()] + [f"work/{key}" for key in files_under(work)]
    )  # nothing outside the output


def test_hostile_bridge_metadata_never_becomes_a_path(registry, tmp_path):
    uploads = tmp_path / "in"
    uploads.mkdir()
    good = SAMPLES / "archives" / "rec-0001-number-match.zip"
    invalid = SAMPLES / "archives" / "rec-0005-invalid-response-time.zip"
    metadata = json.loads(Path(f"{good}.metadata.json").read_text())
    cases = {
        "a-traversal.zip": (good, {"assessmentid": "../../../../outside", "recordid": "rec-t"}),
        "b-slashes.zip": (good, {"assessmentid": "x/y=z%", "recordid": "../rec-s"}),
        # 250 characters, 500 bytes: a short enough id, but no file system names its folder.
        "c-too-long.zip": (good, {"assessmentid": "é" * 250, "recordid": "rec-long"}),
        "d-dots.zip": (good, {"assessmentid": "..", "recordid": ".."}),
        "e-invalid.zip": (invalid, {"recordid": "../../../../escape"}),
        "f-plain.zip": (good, {}),
    }
    for name, (source, changes) in cases.items():
        shutil.copy(source, uploads / name)
        values = json.loads(Path(f"{source}.metadata.json").read_text()) if source != good else dict(metadata)
        (uploads / f"{name}.metadata.json").write_text(json.dumps({**values, **changes}))
    report = ingest_folder(uploads, tmp_path / "out", registry)

    assert report["archives"] == {"total": 6, "processed": 4, "invalid": 2, "skipped": 0}
    reasons = {e["source"].rsplit("/", 1)[-1]: e["reason"] for e in report["invalid"]}
    assert reasons["c-too-long.zip"].startswith("unusable-key: the metadata gives no usable partition folder: the name")
    assert "is 513 bytes long; a file system names at most 255" in reasons["c-too-long.zip"]
    assert reasons["e-invalid.zip"].startswith("failed validation")
    rows = read_dataset(tmp_path / "out", "TaskData_v1")
    assert sorted({r["assessmentid"] for r in rows}) == ["..", "../../../../outside", "number-match", "x/y=z%"]
    folders = {p.parent.relative_to(tmp_path / "out" / "json").as_posix() for p in (tmp_path / "out").rglob("*.ndjson")}
    assert "dataset=TaskData_v1/assessmentid=..%2F..%2F..%2F..%2Foutside/year=2024/month=03/day=01" in folders
    assert all(folder.startswith("dataset=") and folder.count("/") == 4 for folder in folders)
    # The invalid record is keyed by a digest and keeps its record id; nothing left the output.
    entries = invalid_entries(tmp_path / "out")
    assert set(entries) == {"../../../../escape", "rec-long"}
    assert {key.split("/")[0] for key in files_under(tmp_path)} == {"in", "out"}


def test_a_cohort_no_storage_can_hold_makes_its_export_invalid_and_the_rest_go_on(registry, tmp_path):
    cohorts = {"a-nul.zip": "a\0b", "b-long.zip": "é" * 130, "c-fine.zip": "fine/../x"}
    for name, cohort in cohorts.items():
        write_export(tmp_path / "in" / name, cohort)
    report = ingest_folder(tmp_path / "in", tmp_path / "out", registry, profile="recover")
    assert report["archives"] == {"total": 3, "processed": 1, "invalid": 2, "skipped": 0}
    reasons = {e["source"].rsplit("/", 1)[-1]: e["reason"] for e in report["invalid"]}
    assert reasons == {
        "a-nul.zip": "unusable-key: the metadata gives no usable partition folder: "
        "the name 'cohort=a\\x00b' holds a NUL character, which no file system can name",
        "b-long.zip": "unusable-key: the metadata gives no usable partition folder: "
        f"the name {'cohort=' + 'é' * 73 + '...'!r} is 267 bytes long; a file system names at most 255",
    }
    assert [r["cohort"] for r in read_dataset(tmp_path / "out", DATASET)] == ["fine/../x", "fine/../x"]
    parts = [key for key in files_under(tmp_path / "out") if key.startswith("json/")]
    assert len(parts) == 1 and parts[0].startswith(f"json/dataset={DATASET}/cohort=fine%2F..%2Fx/part-")


def publish_arrow(registry, work: Path, published: Path) -> PublishManifest:
    result = publish_dataset_arrow(
        dataset_id=DATASET,
        registry=registry,
        profile=load_profile("recover"),
        work=LocalStorage(work),
        published=LocalStorage(published),
        run_id="run",
        catalog=DuckDBCatalog(LocalStorage(published)),
    )
    return result.manifest


def partitions_of(manifest: PublishManifest, fmt: str) -> dict[str, str]:
    """Each file's partition folder (relative to its table) -> the cohort the manifest gives it."""
    table = manifest.tables[TABLE]
    prefix = table.location(manifest.version, fmt) + "/"
    return {posixpath.dirname(f.key[len(prefix) :]): f.partition["cohort"] for f in table.files_of(fmt)}


def test_published_partitions_are_the_values_in_manifest_csv_and_duckdb(registry, exports_ingested, tmp_path):
    base, _ = exports_ingested
    published = tmp_path / "published"
    manifest = publish_arrow(registry, base / "work", published)
    by_folder = partitions_of(manifest, "parquet")
    assert by_folder == {layout.partition_segment("cohort", c): c for c in COHORTS}
    assert partitions_of(manifest, "csv") == by_folder
    for file in manifest.tables[TABLE].files_of("csv"):
        rows = list(csv.DictReader(io.StringIO((published / file.key).read_text())))
        assert {(r["cohort"], r["cohortSeen"]) for r in rows} == {(file.partition["cohort"], file.partition["cohort"])}
    assert all(key.startswith("published/Custom/") or key == "catalog.duckdb" for key in files_under(published))
    with duckdb.connect(str(published / "catalog.duckdb"), read_only=True) as connection:
        seen = connection.execute(f'SELECT "cohort", "cohortSeen", count(*) FROM {TABLE} GROUP BY ALL').fetchall()
    assert sorted(seen) == sorted((c, c, 2) for c in COHORTS)


def test_glue_partitions_hold_the_values_and_locate_the_escaped_folders(registry, exports_ingested, tmp_path):
    base, _ = exports_ingested
    published = tmp_path / "published"
    manifest = publish_arrow(registry, base / "work", published)
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "db"})
        GlueCatalog("db", LocalStorage(published), glue).register(manifest)
        partitions = glue.get_partitions(DatabaseName="db", TableName=TABLE)["Partitions"]
    location = LocalStorage(published).uri(manifest.tables[TABLE].location(manifest.version, "parquet"))
    assert {p["Values"][0]: p["StorageDescriptor"]["Location"] for p in partitions} == {
        c: f"{location}/{layout.partition_segment('cohort', c)}/" for c in COHORTS
    }
    for partition in partitions:  # each location is a folder the publish wrote
        assert (
            published / partition["StorageDescriptor"]["Location"][len(LocalStorage(published).uri("")) + 1 :]
        ).is_dir()


@pytest.mark.spark
def test_both_engines_name_folders_and_publish_values_identically(spark, registry, exports_ingested, tmp_path):
    from bridge_downstream.publish.spark_engine import publish_dataset

    base, _ = exports_ingested
    arrow = publish_arrow(registry, base / "work", tmp_path / "arrow")
    spark_manifest = publish_dataset(
        spark,
        dataset_id=DATASET,
        registry=registry,
        profile=load_profile("recover"),
        work=LocalStorage(base / "work"),
        published=LocalStorage(tmp_path / "spark"),
        run_id="run",
    ).manifest
    for fmt in ("parquet", "csv"):
        assert partitions_of(spark_manifest, fmt) == partitions_of(arrow, fmt)
    assert set(partitions_of(spark_manifest, "parquet").values()) == set(COHORTS)
    assert spark_manifest.tables[TABLE].rows == arrow.tables[TABLE].rows == 2 * len(COHORTS)
