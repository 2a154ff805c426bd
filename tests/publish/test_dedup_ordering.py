"""Dedup keeps exactly one version per key, ordered by instants, identically
on both engines (docs/publish.md, "Deduplication").

Part files are written by hand, as ingest lays them out, so each case holds
exactly the versions it is about."""

from __future__ import annotations

import contextlib
import io
import json

import pyarrow.parquet as pq
import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.instants import instant_micros
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import Profile, ProfileError, load_profile
from bridge_downstream.publish.engines import publish_dataset_with

ENGINES = ["arrow", pytest.param("spark", marks=pytest.mark.spark)]

RECORD_DATASET = "DedupProbe_v1"  # not in the sample registry: columns inferred from the rows
EXPORT_DATASET = "FitbitDevices"  # key [ParticipantIdentifier, Device, Date]
RECORD_PARTITION = {"assessmentid": "probe", "year": 2024, "month": 1, "day": 2}
EXPORT_PARTITION = {"cohort": "adults_v1"}
UPLOADED = "2024-01-02T08:00:00.000Z"

# text order and instant order disagree on each of these pairs
GARBAGE, REAL = "garbage", "2024-01-01T00:00:00Z"
LATER_WITH_OFFSET, EARLIER_IN_UTC = "2024-01-02T09:00:00-02:00", "2024-01-02T10:00:00Z"  # 11:00Z vs 10:00Z
LATER_WITH_FRACTION, EARLIER_WITHOUT = "2024-01-02T10:00:00.500Z", "2024-01-02T10:00:00Z"


def version(record: str, label: str, exported: str | None, rows: int = 2, uploaded: str = UPLOADED) -> list[dict]:
    """The rows one archive writes for a record: a document's elements, in order."""
    shared = {
        "recordid": record,
        "assessmentid": "probe",
        "year": 2024,
        "month": 1,
        "day": 2,
        "uploadedon": uploaded,
        "sourcefile": "probe.json",
    }
    if exported is not None:
        shared["exportedon"] = exported
    return [{"label": label, "element": i, **shared, "sourceindex": i} for i in range(rows)]


def export_row(participant: str, label: str, inserted: str, index: int) -> dict:
    return {
        "ParticipantIdentifier": participant,
        "Device": "Versa",
        "Date": "2024-01-01",
        "label": label,
        "InsertedDate": inserted,
        "cohort": "adults_v1",
        "exportstartdate": "2024-01-01",
        "exportenddate": "2024-01-04",
        "sourcefile": "FitbitDevices_20240104.json",
        "sourceindex": index,
    }


def write_part(root, dataset_id: str, partition: dict, name: str, rows: list[dict], task: int = 0) -> None:
    path = root / layout.json_part_key(dataset_id, partition, name, task)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def published_rows(engine: str, request, registry, root, dataset_id: str, profile: str) -> list[dict]:
    """The root table's rows after a publish on ``engine``, sorted."""
    storage = LocalStorage(root)
    published = LocalStorage(root / f"published-{engine}")
    manifest = publish_dataset_with(
        engine,
        lambda: request.getfixturevalue("spark"),
        dataset_id=dataset_id,
        registry=registry,
        profile=load_profile(profile),
        work=storage,
        published=published,
        run_id="dedup",
        catalog=None,
    ).manifest
    table = next(t for t in manifest.tables.values() if t.parent is None)
    rows = []
    for file in table.files_of("parquet"):
        rows += pq.read_table(io.BytesIO(published.read_bytes(file.key))).to_pylist()
    assert len(rows) == table.rows
    return sorted(rows, key=lambda row: json.dumps(row, sort_keys=True, default=str))


def survivors(rows: list[dict], *fields: str) -> list[tuple]:
    return sorted(tuple(row[name] for name in fields) for row in rows)


@contextlib.contextmanager
def session_setting(spark, name: str, value: str):
    """``name`` set to ``value`` in the shared session, then as it was."""
    before = spark.conf.get(name, None)
    spark.conf.set(name, value)
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(name)
        else:
            spark.conf.set(name, before)


# -- instants -------------------------------------------------------------------------

INSTANTS = {
    "2024-01-02T10:00:00Z": 1704189600000000,
    "2024-01-02T10:00:00.500Z": 1704189600500000,
    "2024-01-02T10:00:00.5Z": 1704189600500000,
    "2024-01-02T12:00:00+02:00": 1704189600000000,
    "2024-01-02T08:00:00-02:00": 1704189600000000,
    "2024-01-02T10:00Z": 1704189600000000,
    "2024-01-02T10:00:00": 1704189600000000,  # no zone: UTC
    "2024-01-02": 1704153600000000,  # a date: its midnight UTC
    "2024-01-02T10:00:00.123456789+01:30": 1704184200123456,  # beyond microseconds: dropped
    "0001-01-01T00:00:00+01:00": -62135600400000000,
    "garbage": None,
    "": None,
    "2023-02-29": None,
    "2024-01-02T24:00:00Z": None,
    "2024-01-02T10:00:60Z": None,
    "2024-13-01": None,
    "0000-01-01": None,
    "2024-01-02T10:00:00Z\n": None,
    "2024-01-02 10:00:00Z": None,
    "2024-01-02t10:00:00z": None,
    "2024-01-02T10:00:00+15:00": None,
    "2024-01-02T10:00:00+0200": None,
    "2024-01-02T10:00:00.Z": None,
    "١٩٧٠-01-01": None,  # Arabic-Indic digits
}


def test_instants_are_iso_8601_with_offsets_and_fractions_honoured():
    assert {text: instant_micros(text) for text in INSTANTS} == INSTANTS
    assert instant_micros(None) is None
    assert instant_micros(20240102) is None


@pytest.mark.spark
def test_spark_reads_every_instant_as_python_does(spark):
    from bridge_downstream.common.instants import instant_micros_column

    frame = spark.createDataFrame([(text,) for text in INSTANTS], "text string")
    for ansi in ("false", "true"):
        with session_setting(spark, "spark.sql.ansi.enabled", ansi):
            rows = frame.select("text", instant_micros_column("text").alias("micros")).collect()
        assert {row.text: row.micros for row in rows} == INSTANTS, ansi


# -- ordering by instants ---------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("newer", "older"),
    [(REAL, GARBAGE), (LATER_WITH_OFFSET, EARLIER_IN_UTC), (LATER_WITH_FRACTION, EARLIER_WITHOUT)],
    ids=["garbage-never-wins", "offset", "missing-fraction"],
)
def test_the_later_instant_wins_where_text_order_says_otherwise(engine, newer, older, request, registry, tmp_path):
    # the older version sits in the later part file, which would win a tie
    write_part(tmp_path, RECORD_DATASET, RECORD_PARTITION, "a", version("r1", "newer", newer, rows=3))
    write_part(
        tmp_path, RECORD_DATASET, RECORD_PARTITION, "b", version("r1", "older", older) + version("r2", "r2", REAL)
    )
    rows = published_rows(engine, request, registry, tmp_path, RECORD_DATASET, "mtb")
    assert survivors(rows, "recordid", "label", "element") == [
        ("r1", "newer", 0),
        ("r1", "newer", 1),
        ("r1", "newer", 2),
        ("r2", "r2", 0),
        ("r2", "r2", 1),
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_missing_or_unparseable_instant_comes_last_then_uploadedon_decides(engine, request, registry, tmp_path):
    write_part(
        tmp_path,
        RECORD_DATASET,
        RECORD_PARTITION,
        "a",
        version("r1", "dated", "2020-01-01T00:00:00Z")
        + version("r2", "unexported-late-upload", None, uploaded="2024-01-02T09:00:00Z")
        + version("r2", "unexported-early-upload", "not a date", uploaded="2024-01-02T07:00:00Z"),
    )
    write_part(tmp_path, RECORD_DATASET, RECORD_PARTITION, "b", version("r1", "undated", None))
    rows = published_rows(engine, request, registry, tmp_path, RECORD_DATASET, "mtb")
    assert survivors(rows, "recordid", "label") == [
        ("r1", "dated"),
        ("r1", "dated"),
        ("r2", "unexported-late-upload"),
        ("r2", "unexported-late-upload"),
    ]


# -- exactly one version per key ----------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_a_tie_inside_one_part_file_keeps_only_the_last_written_version(engine, request, registry, tmp_path):
    tied = "2024-01-03T00:00:00Z"
    rows = (
        version("r1", "first", tied, rows=3)
        + version("r1", "second", tied, rows=3)  # right after the first: no gap tells them apart
        + version("r2", "r2", tied)
        + version("r1", "third", tied, rows=2)
        + version("r3", "only", tied, rows=1)
    )
    write_part(tmp_path, RECORD_DATASET, RECORD_PARTITION, "a", rows)
    published = published_rows(engine, request, registry, tmp_path, RECORD_DATASET, "mtb")
    assert survivors(published, "recordid", "label", "element") == [
        ("r1", "third", 0),
        ("r1", "third", 1),
        ("r2", "r2", 0),
        ("r2", "r2", 1),
        ("r3", "only", 0),
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_back_to_back_versions_of_one_file_part_ways_where_the_sequence_restarts(engine, request, registry, tmp_path):
    """Versions of several documents: sourcefile then sourceindex increase along
    one archive's rows, so the second archive starts where they fall back."""
    tied = "2024-01-03T00:00:00Z"

    def archive(label: str) -> list[dict]:
        return [
            {**row, "sourcefile": document}
            for document in ("a.json", "b.json")
            for row in version("r1", f"{label}-{document}", tied, rows=2)
        ]

    write_part(tmp_path, RECORD_DATASET, RECORD_PARTITION, "a", archive("first") + archive("second"))
    published = published_rows(engine, request, registry, tmp_path, RECORD_DATASET, "mtb")
    assert survivors(published, "label", "sourcefile", "sourceindex") == [
        ("second-a.json", "a.json", 0),
        ("second-a.json", "a.json", 1),
        ("second-b.json", "b.json", 0),
        ("second-b.json", "b.json", 1),
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_tie_across_part_files_keeps_the_version_of_the_last_part_file(engine, request, registry, tmp_path):
    tied = "2024-01-03T00:00:00Z"
    write_part(tmp_path, RECORD_DATASET, RECORD_PARTITION, "a", version("r1", "in-a", tied, rows=3), task=1)
    write_part(tmp_path, RECORD_DATASET, RECORD_PARTITION, "b", version("r1", "in-b", tied, rows=2))
    write_part(
        tmp_path,
        RECORD_DATASET,
        RECORD_PARTITION,
        "a",
        version("r1", "in-a0-first", tied) + version("r1", "in-a0-second", tied) + version("r2", "r2", tied),
    )
    published = published_rows(engine, request, registry, tmp_path, RECORD_DATASET, "mtb")
    assert survivors(published, "recordid", "label", "element") == [
        ("r1", "in-b", 0),
        ("r1", "in-b", 1),
        ("r2", "r2", 0),
        ("r2", "r2", 1),
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_recover_tie_keeps_one_row(engine, request, registry, tmp_path):
    tied = "2024-01-03T00:00:00Z"
    # two exports in one part file, each with the key on its first line (the same sourceindex)
    write_part(
        tmp_path,
        EXPORT_DATASET,
        EXPORT_PARTITION,
        "a",
        [export_row("p1", "a-first", tied, 0), export_row("p2", "p2", tied, 1), export_row("p1", "a-second", tied, 0)],
    )
    write_part(tmp_path, EXPORT_DATASET, EXPORT_PARTITION, "b", [export_row("p3", "b-first", tied, 0)])
    write_part(tmp_path, EXPORT_DATASET, EXPORT_PARTITION, "c", [export_row("p3", "c-only", tied, 0)])
    # the same instant in another spelling is a tie too
    write_part(
        tmp_path,
        EXPORT_DATASET,
        EXPORT_PARTITION,
        "d",
        [export_row("p4", "d-first", "2024-01-03T02:00:00+02:00", 0), export_row("p4", "d-second", tied, 1)],
    )
    published = published_rows(engine, request, registry, tmp_path, EXPORT_DATASET, "recover")
    assert survivors(published, "ParticipantIdentifier", "label") == [
        ("p1", "a-second"),
        ("p2", "p2"),
        ("p3", "c-only"),
        ("p4", "d-second"),
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_recover_rows_order_by_instants(engine, request, registry, tmp_path):
    write_part(
        tmp_path,
        EXPORT_DATASET,
        EXPORT_PARTITION,
        "a",
        [
            export_row("p1", "newer", LATER_WITH_OFFSET, 0),
            export_row("p2", "newer", LATER_WITH_FRACTION, 1),
            export_row("p3", "real", REAL, 2),
        ],
    )
    write_part(
        tmp_path,
        EXPORT_DATASET,
        EXPORT_PARTITION,
        "b",
        [
            export_row("p1", "older", EARLIER_IN_UTC, 0),
            export_row("p2", "older", EARLIER_WITHOUT, 1),
            export_row("p3", "garbage", GARBAGE, 2),
        ],
    )
    published = published_rows(engine, request, registry, tmp_path, EXPORT_DATASET, "recover")
    assert survivors(published, "ParticipantIdentifier", "label") == [("p1", "newer"), ("p2", "newer"), ("p3", "real")]


# -- both engines ----------------------------------------------------------------------------


def many_versions(root) -> int:
    """Records with several versions, tied and not, in several part files; returns the records."""
    exported = ["2024-01-03T00:00:00Z", "2024-01-03T02:00:00+02:00", "2024-01-02", "bad", None]
    files: dict[tuple[str, int], list[dict]] = {}
    records = 40
    for record in range(records):
        for number in range(1 + record % 4):
            place = ("a" if (record + number) % 3 else "b", (record * number) % 2)
            when = exported[(record + 2 * number) % len(exported)]
            files.setdefault(place, []).extend(
                version(f"r{record}", f"v{number}", when, rows=1 + (record + number) % 3)
            )
    for (name, task), rows in files.items():
        write_part(root, RECORD_DATASET, RECORD_PARTITION, name, rows, task=task)
    return records


@pytest.mark.spark
def test_both_engines_keep_the_same_single_version_of_every_record(request, registry, tmp_path):
    records = many_versions(tmp_path)
    on_arrow = published_rows("arrow", request, registry, tmp_path, RECORD_DATASET, "mtb")
    on_spark = published_rows("spark", request, registry, tmp_path, RECORD_DATASET, "mtb")
    assert survivors(on_spark, "recordid", "label", "element") == survivors(on_arrow, "recordid", "label", "element")
    kept: dict[str, list[dict]] = {}
    for row in on_arrow:
        kept.setdefault(row["recordid"], []).append(row)
    assert len(kept) == records
    for record, rows in kept.items():
        (label,) = {row["label"] for row in rows}  # one version, with all of its rows
        number = int(label[1:])
        assert sorted(row["element"] for row in rows) == list(range(1 + (int(record[1:]) + number) % 3)), record


@pytest.mark.spark
def test_spark_orders_rows_of_a_part_file_read_in_several_splits(spark, request, registry, tmp_path):
    """A large part file is read in several splits (tasks): a row's place in
    it, and so the versions, are still those of the file."""
    tied = "2024-01-03T00:00:00Z"
    filler = [row for record in range(60) for row in version(f"f{record}", "filler", tied, rows=3)]
    rows = version("r1", "first", tied, rows=40) + filler + version("r1", "last", tied, rows=40) + filler[:30]
    write_part(tmp_path, RECORD_DATASET, RECORD_PARTITION, "a", rows)
    with session_setting(spark, "spark.sql.files.maxPartitionBytes", "4096"):
        splits = spark.read.text(str(tmp_path / layout.dataset_prefix(RECORD_DATASET)), recursiveFileLookup=True)
        assert splits.select("_metadata.file_block_start").distinct().count() > 10
        on_spark = published_rows("spark", request, registry, tmp_path, RECORD_DATASET, "mtb")
    on_arrow = published_rows("arrow", request, registry, tmp_path, RECORD_DATASET, "mtb")
    r1 = [row for row in on_spark if row["recordid"] == "r1"]
    assert sorted(row["element"] for row in r1) == list(range(40))
    assert {row["label"] for row in r1} == {"last"}
    assert len(on_spark) == 40 + 60 * 3
    assert survivors(on_spark, "recordid", "label", "element") == survivors(on_arrow, "recordid", "label", "element")


# -- the profile's dedup section ---------------------------------------------------------------


def test_the_built_in_profiles_say_what_a_version_is():
    assert load_profile("mtb").dedup.version_sequence == ("sourcefile", "sourceindex")
    assert load_profile("recover").dedup.version_sequence == ()
    assert load_profile("mtb").dedup.order_by == (("exportedon", True), ("uploadedon", True))


@pytest.mark.parametrize(
    ("dedup", "message"),
    [
        ({"key": ["id"], "order_by": ["seen descending"]}, "the direction is asc or desc"),
        ({"key": ["id"], "version_sequence": ["position"]}, r"\['position'\] are not enrichment columns"),
    ],
)
def test_a_dedup_section_that_cannot_be_followed_is_refused(dedup, message):
    raw = {"name": "probe", "kind": "bridge-archive", "enrichment_columns": {"sourceindex": "bigint"}, "dedup": dedup}
    with pytest.raises(ProfileError, match=message):
        Profile.from_mapping(raw)
