"""Hostile and odd input: every archive ends in exactly one place, with its
reason, and the other archives of the batch are processed."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.limits import DEFAULT_LIMITS, ArchiveLimits
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.ingest import archive_ingest
from bridge_downstream.ingest.archive_ingest import ingest_archive
from bridge_downstream.ingest.context import IngestContext
from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream.ingest.outcomes import read_run_records
from bridge_downstream.ingest.part_writer import PartWriter
from bridge_downstream.ingest.run import run_ingest
from bridge_downstream.ingest.safe_archive import kept_every_key, parse_json
from project_paths import SHARED_DATA, shared_path
from support import SAMPLES, invalid_entries, mtb_metadata, read_dataset

GOOD_TASK = {"taskIdentifier": "number-match", "steps": [{"identifier": "a", "responseTime": 1.0}]}
ARCHIVE_METADATA = {"appName": "SampleApp", "appVersion": "2.1.0", "taskIdentifier": "number-match", "files": []}


def zip_bytes(members: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content if isinstance(content, bytes | str) else json.dumps(content))
    return buffer.getvalue()


def good_upload(record_id: str = "good-1") -> tuple[bytes, dict]:
    return zip_bytes({"taskData.json": GOOD_TASK}), mtb_metadata(record_id)


def run_batch(
    tmp_path: Path,
    registry,
    archives: dict[str, tuple[bytes, dict | None]],
    *,
    keys: list[str] | None = None,
    profile: str = "mtb",
    workers: int = 1,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    given_metadata: dict[str, dict] | None = None,
):
    """Ingest the archives (name -> (bytes, sidecar metadata or None)) as one
    batch, in the order of ``keys`` (default: every name once). Metadata in
    ``given_metadata`` comes with the input instead (as replay and Glue give it).
    Returns (report, output folder, {name: records-file lines})."""
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    for name, (data, metadata) in archives.items():
        (folder / name).write_bytes(data)
        if metadata is not None:
            (folder / f"{name}.metadata.json").write_text(json.dumps(metadata))
    storage = LocalStorage(folder)
    given_metadata = given_metadata or {}
    inputs = [ArchiveInput(storage, key, metadata=given_metadata.get(key)) for key in keys or list(archives)]
    output = LocalStorage(tmp_path / "out")
    report = run_ingest(
        inputs,
        registry=registry,
        profile=load_profile(profile),
        output=output,
        sink=StorageInvalidSink(output),
        workers=workers,
        limits=limits,
    )
    by_name: dict[str, list[dict]] = {}
    for record in read_run_records(output, report["run_id"]):
        by_name.setdefault(record["source"].rsplit("/", 1)[-1], []).append(record)
    assert sum(len(lines) for lines in by_name.values()) == len(inputs)  # nothing lost, nothing doubled
    return report, tmp_path / "out", by_name


def outcome(records: dict[str, list[dict]], name: str) -> tuple[str, str | None]:
    (record,) = records[name]
    return record["status"], record["reason"]


def assert_good_processed(out: Path, record_ids: list[str] | None = None):
    assert [r["recordid"] for r in read_dataset(out, "TaskData_v1")] == (record_ids or ["good-1"])


# -- 1. one archive, one outcome, whatever happens -------------------------------------


def test_upload_date_out_of_range_in_utc_is_invalid_and_the_batch_goes_on(registry, tmp_path):
    # Valid ISO 8601, but one hour before year 1 once in UTC: datetime overflows.
    report, out, records = run_batch(
        tmp_path,
        registry,
        {
            "bad.zip": (
                zip_bytes({"taskData.json": GOOD_TASK}),
                mtb_metadata("bad-1", uploaded_on="0001-01-01T00:00:00+01:00"),
            ),
            "good.zip": good_upload(),
        },
    )
    assert outcome(records, "bad.zip") == (
        "invalid",
        "Bridge metadata uploadedon '0001-01-01T00:00:00+01:00' is out of range once converted to UTC",
    )
    assert outcome(records, "good.zip") == ("processed", None)
    assert report["archives"] == {"total": 2, "processed": 1, "invalid": 1, "skipped": 0}
    assert_good_processed(out)


@pytest.mark.parametrize(
    "document,reason",
    [
        # orjson reads 1,000 levels but writes at most 255: the row cannot be encoded.
        (b"[" * 1000 + b"]" * 1000, "unexpected-error: TypeError: Recursion limit reached"),
        (b'{"a":' * 1000 + b"1" + b"}" * 1000, "unexpected-error: TypeError: Recursion limit reached"),
        # Past orjson's parser limit it is no JSON document ingest reads.
        (b"[" * 1100 + b"]" * 1100, "not-json: answers.json is not JSON (depth limit exceeded"),
    ],
)
def test_deeply_nested_document_is_invalid_with_the_error_named(registry, tmp_path, document, reason):
    # A legacy assessment: not validated, so the document reaches the encoder.
    legacy = zip_bytes({"answers.json": document, "metadata.json": ARCHIVE_METADATA})
    report, out, records = run_batch(
        tmp_path,
        registry,
        {
            "bad.zip": (legacy, mtb_metadata("bad-1", assessment="legacy-survey")),
            "good.zip": good_upload(),
        },
    )
    status, got = outcome(records, "bad.zip")
    assert status == "invalid" and got.startswith(reason), got
    assert outcome(records, "good.zip") == ("processed", None)
    # answers.json comes first and fails: the archive gives no row at all.
    assert read_dataset(out, "SurveyAnswers_v1") == [] and read_dataset(out, "ArchiveMetadata_v1") == []
    assert_good_processed(out)
    assert report["archives"]["invalid"] == 1


def test_any_error_of_a_reader_ends_its_archive_invalid_with_type_and_message(registry, tmp_path, monkeypatch):
    reader = archive_ingest.PROCESSORS["bridge-archive"]

    def failing_after_writing(archive, metadata, ctx, writer, outcome):
        reader(archive, metadata, ctx, writer, outcome)  # writes the archive's rows first
        if metadata["recordid"] == "bad-1":
            raise KeyError("boom")

    monkeypatch.setitem(archive_ingest.PROCESSORS, "bridge-archive", failing_after_writing)
    _report, out, records = run_batch(
        tmp_path,
        registry,
        {"a-good.zip": good_upload("good-1"), "b-bad.zip": good_upload("bad-1"), "c-good.zip": good_upload("good-2")},
    )
    assert outcome(records, "b-bad.zip") == ("invalid", "unexpected-error: KeyError: 'boom'")
    assert [outcome(records, name)[0] for name in ("a-good.zip", "c-good.zip")] == ["processed", "processed"]
    assert_good_processed(out, ["good-1", "good-2"])  # bad-1's rows were rolled back
    (entry,) = invalid_entries(out).values()
    assert entry["reason"] == "unexpected-error: KeyError: 'boom'"


def test_memory_error_is_not_an_archive_outcome(registry, tmp_path, monkeypatch):
    def exhausted(archive, metadata, ctx, writer, outcome):
        raise MemoryError

    monkeypatch.setitem(archive_ingest.PROCESSORS, "bridge-archive", exhausted)
    data, metadata = good_upload()
    (tmp_path / "a.zip").write_bytes(data)
    writer = PartWriter(0, LocalStorage(tmp_path / "out"))
    try:
        with pytest.raises(MemoryError):
            ingest_archive(
                ArchiveInput(LocalStorage(tmp_path), "a.zip", metadata=metadata),
                IngestContext(registry, load_profile("mtb")),
                writer,
            )
    finally:
        writer.close()


# -- 2. an archive given twice ----------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_the_same_key_twice_is_processed_once(registry, tmp_path, workers):
    report, out, records = run_batch(
        tmp_path,
        registry,
        {"a.zip": good_upload("dup-1"), "b.zip": good_upload("good-1")},
        keys=["a.zip", "a.zip", "b.zip"],
        workers=workers,
    )
    statuses = sorted((r["status"], r["reason"] or "") for r in records["a.zip"])
    assert statuses[0] == ("processed", "")
    assert statuses[1][0] == "skipped" and statuses[1][1].startswith("duplicate of file://")
    assert statuses[1][1].endswith("/in/a.zip in this run: the same archive and metadata")
    assert outcome(records, "b.zip") == ("processed", None)
    assert sorted(r["recordid"] for r in read_dataset(out, "TaskData_v1")) == ["dup-1", "good-1"]
    assert report["archives"] == {"total": 3, "processed": 2, "invalid": 0, "skipped": 1}


def test_two_keys_of_one_archive_in_two_tasks_are_processed_once(registry, tmp_path):
    # a.zip and b.zip are the same bytes and metadata; with two workers they
    # fall to two tasks (a, c -> task 0; b, d -> task 1).
    copy = good_upload("dup-1")
    report, out, records = run_batch(
        tmp_path,
        registry,
        {"a.zip": copy, "b.zip": copy, "c.zip": good_upload("good-1"), "d.zip": good_upload("good-2")},
        workers=2,
    )
    assert outcome(records, "a.zip") == ("processed", None)
    status, reason = outcome(records, "b.zip")
    assert status == "skipped" and reason.endswith("/in/a.zip in this run: the same archive and metadata")
    assert [outcome(records, name)[0] for name in ("c.zip", "d.zip")] == ["processed", "processed"]
    assert sorted(r["recordid"] for r in read_dataset(out, "TaskData_v1")) == ["dup-1", "good-1", "good-2"]
    ledger = [json.loads(line) for p in (out / "ledger").rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert sorted(entry["source"].rsplit("/", 1)[-1] for entry in ledger) == ["a.zip", "c.zip", "d.zip"]
    parts = [json.loads(line) for line in (out / report["parts"]).read_text().splitlines()]
    assert sum(part["rows"] for part in parts if part["dataset"] == "TaskData_v1") == 3
    assert {p.relative_to(out).as_posix() for p in (out / "json").rglob("*.ndjson")} == {p["key"] for p in parts}


def test_a_repeated_invalid_archive_reaches_the_sink_once(registry, tmp_path):
    bad = (zip_bytes({"taskData.json": {"taskIdentifier": "number-match", "steps": "no"}}), mtb_metadata("bad-1"))
    report, out, records = run_batch(
        tmp_path, registry, {"a.zip": bad, "b.zip": bad, "c.zip": good_upload()}, workers=2
    )
    assert outcome(records, "a.zip")[0] == "invalid"
    assert outcome(records, "b.zip")[0] == "skipped"
    assert outcome(records, "c.zip") == ("processed", None)
    assert len(list((out / "invalid").glob("*.json"))) == 1
    assert report["archives"] == {"total": 3, "processed": 1, "invalid": 1, "skipped": 1}


# -- 3. ordering fields are instants --------------------------------------------------


def test_unparseable_exported_on_is_invalid(registry, tmp_path):
    _report, out, records = run_batch(
        tmp_path,
        registry,
        {
            "bad.zip": (zip_bytes({"taskData.json": GOOD_TASK}), mtb_metadata("bad-1", exportedon="next week")),
            "good.zip": good_upload(),
        },
    )
    assert outcome(records, "bad.zip") == (
        "invalid",
        "Bridge metadata exportedon 'next week' is not an ISO 8601 timestamp",
    )
    assert_good_processed(out)


def export_zip(files: dict[str, str], manifest: str | None = None) -> bytes:
    members: dict[str, object] = dict(files)
    if manifest is not None:
        members["Manifest.csv"] = manifest
    return zip_bytes(members)


def test_export_row_whose_inserted_date_is_not_an_instant_invalidates_the_export(registry, tmp_path):
    bad = export_zip(
        {
            "FitbitDevices_20240102.json": '{"ParticipantIdentifier": "p2", "InsertedDate": "2024-01-02T03:04:05Z"}\n',
            "FitbitSleepLogs_20240102.json": (
                '{"LogId": "1", "InsertedDate": "2024-01-02T03:04:05Z"}\n{"LogId": "2", "InsertedDate": "yesterday"}\n'
            ),
        }
    )
    good = export_zip({"FitbitDevices_20240101.json": '{"ParticipantIdentifier": "p1", "InsertedDate": null}\n'})
    _report, out, records = run_batch(
        tmp_path,
        registry,
        {"bad.zip": (bad, {"cohort": "adults_v1"}), "good.zip": (good, {"cohort": "adults_v1"})},
        profile="recover",
    )
    assert outcome(records, "bad.zip") == (
        "invalid",
        "FitbitSleepLogs_20240102.json line 2: InsertedDate 'yesterday' is not an ISO 8601 timestamp",
    )
    assert outcome(records, "good.zip") == ("processed", None)  # a null InsertedDate is no InsertedDate
    assert [r["ParticipantIdentifier"] for r in read_dataset(out, "FitbitDevices")] == ["p1"]
    assert read_dataset(out, "FitbitSleepLogs") == []


@pytest.mark.parametrize(
    "value,shown", [("20240102", "20240102"), ('{"at": "2024-01-02"}', '{"at":"2024-01-02"}'), ("true", "true")]
)
def test_export_row_whose_inserted_date_is_not_text_invalidates_the_export(registry, tmp_path, value, shown):
    bad = export_zip({"FitbitSleepLogs_20240102.json": f'{{"LogId": "1", "InsertedDate": {value}}}\n'})
    good = export_zip({"FitbitSleepLogs_20240101.json": '{"LogId": "0"}\n'})
    _, out, records = run_batch(
        tmp_path,
        registry,
        {"bad.zip": (bad, {"cohort": "adults_v1"}), "good.zip": (good, {"cohort": "adults_v1"})},
        profile="recover",
    )
    assert outcome(records, "bad.zip") == (
        "invalid",
        f"FitbitSleepLogs_20240102.json line 1: InsertedDate {shown} is not an ISO 8601 timestamp",
    )
    assert [r["LogId"] for r in read_dataset(out, "FitbitSleepLogs")] == ["0"]


def test_export_whose_file_name_date_is_no_calendar_date_is_invalid(registry, tmp_path):
    # the export dates come from each file's name, as recover took them; the manifest's are not read
    bad = export_zip(
        {"FitbitDevices_20241302.json": '{"ParticipantIdentifier": "p2"}\n'},
        manifest="ExportStartDate,ExportEndDate\n2024-01-01T00:00:00+00:00,soon\n",
    )
    good = export_zip({"FitbitDevices_20240101.json": '{"ParticipantIdentifier": "p1"}\n'})
    _, out, records = run_batch(
        tmp_path,
        registry,
        {"bad.zip": (bad, {"cohort": "adults_v1"}), "good.zip": (good, {"cohort": "adults_v1"})},
        profile="recover",
    )
    assert outcome(records, "bad.zip") == (
        "invalid",
        "FitbitDevices_20241302.json: a date of its name is no calendar date",
    )
    assert [r["ParticipantIdentifier"] for r in read_dataset(out, "FitbitDevices")] == ["p1"]


# -- 4. metadata is checked -------------------------------------------------------------


@pytest.mark.parametrize(
    "changes,reason",
    [
        ({"recordid": "bad\x1b[31m-1"}, "Bridge metadata recordid 'bad\\x1b[31m-1' holds the control character U+001B"),
        ({"recordid": "r" * 300}, "Bridge metadata recordid '" + "r" * 80 + "'... is longer than 256 characters"),
        (
            {"assessmentid": "number\nmatch"},
            "Bridge metadata assessmentid 'number\\nmatch' holds the control character U+000A",
        ),
        ({"assessmentrevision": "1x"}, "Bridge metadata assessmentrevision '1x' is not an integer"),
        ({"assessmentrevision": " 1"}, "Bridge metadata assessmentrevision ' 1' is not an integer"),
        (
            {"uploadedon": "2024-02-30T10:00:00Z"},
            "Bridge metadata uploadedon '2024-02-30T10:00:00Z' is not an ISO 8601",
        ),
    ],
)
def test_metadata_not_of_its_form_is_invalid(registry, tmp_path, changes, reason):
    metadata = {**mtb_metadata("bad-1"), **changes}
    _report, out, records = run_batch(
        tmp_path, registry, {"bad.zip": (zip_bytes({"taskData.json": GOOD_TASK}), metadata), "good.zip": good_upload()}
    )
    status, got = outcome(records, "bad.zip")
    assert status == "invalid" and got.startswith(reason), got
    assert not any(ord(c) < 32 for c in got)  # escaped: no raw control character reaches a log
    assert_good_processed(out)


def test_null_metadata_is_missing_never_the_text_none(registry, tmp_path):
    upload = zip_bytes({"taskData.json": GOOD_TASK, "metadata.json": ARCHIVE_METADATA})
    _report, out, records = run_batch(
        tmp_path,
        registry,
        {"a-bad.zip": (upload, None), "b-good.zip": (upload, None)},
        given_metadata={
            "a-bad.zip": {**mtb_metadata("bad-1"), "uploadedon": None},
            "b-good.zip": {**mtb_metadata("good-1"), "clientinfo": None},
        },
    )
    assert outcome(records, "a-bad.zip") == ("invalid", "Bridge metadata is incomplete: missing uploadedon")
    assert outcome(records, "b-good.zip") == ("processed", None)
    (row,) = read_dataset(out, "ArchiveMetadata_v1")
    assert "clientinfo" not in row and "None" not in row.values()


def test_metadata_names_that_differ_only_in_case_are_refused_unless_they_agree(registry, tmp_path):
    upload = zip_bytes({"taskData.json": GOOD_TASK})
    _, out, records = run_batch(
        tmp_path,
        registry,
        {"a-bad.zip": (upload, None), "b-good.zip": (upload, None)},
        given_metadata={
            "a-bad.zip": {**mtb_metadata("bad-1"), "RecordId": "bad-2"},
            "b-good.zip": {**mtb_metadata("good-1"), "RecordID": "good-1"},
        },
    )
    assert outcome(records, "a-bad.zip") == (
        "invalid",
        "ambiguous Bridge metadata: 'recordid' and 'RecordId' differ only in case and give different values",
    )
    assert outcome(records, "b-good.zip") == ("processed", None)
    assert_good_processed(out)


def test_metadata_value_that_is_a_list_or_object_is_refused_and_a_number_is_its_text(registry, tmp_path):
    upload = zip_bytes({"taskData.json": GOOD_TASK})
    _, out, records = run_batch(
        tmp_path,
        registry,
        {"a-list.zip": (upload, None), "b-object.zip": (upload, None), "c-number.zip": (upload, None)},
        given_metadata={
            "a-list.zip": {**mtb_metadata("bad-1"), "datagroups": ["a", "b"]},
            "b-object.zip": {**mtb_metadata("bad-2"), "clientinfo": {"appName": "x"}},
            "c-number.zip": {**mtb_metadata("good-1"), "assessmentrevision": 1},
        },
    )
    assert outcome(records, "a-list.zip") == ("invalid", "Bridge metadata datagroups is not text but a JSON array")
    assert outcome(records, "b-object.zip") == ("invalid", "Bridge metadata clientinfo is not text but a JSON object")
    assert outcome(records, "c-number.zip") == ("processed", None)
    assert_good_processed(out)


def test_metadata_cannot_override_what_the_pipeline_derives(registry, tmp_path):
    forged = {"year": "1999", "month": "13", "day": "99", "sourcefile": "forged.json", "sourceindex": "42"}
    forged |= {"id": "forged-id", "index": "7", "studyid": "study-1"}
    upload = zip_bytes({"taskData.json": GOOD_TASK, "metadata.json": ARCHIVE_METADATA})
    _, out, records = run_batch(tmp_path, registry, {"a.zip": (upload, {**mtb_metadata("rec-1"), **forged})})
    assert outcome(records, "a.zip") == ("processed", None)
    (row,) = read_dataset(out, "ArchiveMetadata_v1")
    assert (row["year"], row["month"], row["day"]) == (2024, 3, 1)  # from uploadedon
    assert (row["sourcefile"], row["sourceindex"], row["recordid"]) == ("metadata.json", 0, "rec-1")
    assert "id" not in row and "index" not in row
    assert row["studyid"] == "study-1"  # other metadata fields still reach the record-metadata rows
    assert not set(forged.values()) - {"study-1"} & {str(value) for value in row.values()}
    (task,) = read_dataset(out, "TaskData_v1")
    assert "studyid" not in task and (task["year"], task["sourcefile"]) == (2024, "taskData.json")


# -- 5. empty documents ---------------------------------------------------------------


@pytest.mark.parametrize("empty", [b"[]", b"null"])
def test_empty_legacy_document_gives_no_row(registry, tmp_path, empty):
    report, out, records = run_batch(
        tmp_path,
        registry,
        {
            "a-empty.zip": (zip_bytes({"answers.json": empty}), mtb_metadata("empty-1", assessment="legacy-survey")),
            "b-half.zip": (
                zip_bytes({"answers.json": empty, "metadata.json": ARCHIVE_METADATA}),
                mtb_metadata("half-1", assessment="legacy-survey"),
            ),
            "c-good.zip": good_upload(),
        },
    )
    assert outcome(records, "a-empty.zip") == (
        "skipped",
        "no file of the archive gives rows (answers.json: empty document ([] or null): no rows)",
    )
    assert outcome(records, "b-half.zip") == ("processed", None)
    (skipped,) = records["b-half.zip"][0]["files_skipped"]
    assert skipped == {"file": "answers.json", "reason": "empty document ([] or null): no rows"}
    assert read_dataset(out, "SurveyAnswers_v1") == []  # no row of nulls
    assert [r["recordid"] for r in read_dataset(out, "ArchiveMetadata_v1")] == ["half-1"]
    assert_good_processed(out)
    assert report["archives"] == {"total": 3, "processed": 2, "invalid": 0, "skipped": 1}


# -- 6. limits that match the threat ----------------------------------------------------


def test_many_small_members_that_inflate_far_past_their_size_are_refused(registry, tmp_path):
    # Each member is below the per-member ratio floor (1 MiB); together they
    # inflate 1,000 times their compressed size -- the shape of a 2.9 MB
    # upload of 2,000 members inflating 2 GiB, at a test's scale.
    bomb = zip_bytes({"taskData.json": GOOD_TASK, **{f"pad-{i:03d}.json": b" " * (64 << 10) for i in range(40)}})
    _report, out, records = run_batch(
        tmp_path, registry, {"bad.zip": (bomb, mtb_metadata("bad-1")), "good.zip": good_upload()}
    )
    status, reason = outcome(records, "bad.zip")
    assert (
        status == "invalid"
        and reason.startswith("zip-bomb: members inflate to 2621")
        and "more than the limit of 200" in reason
    )
    assert_good_processed(out)


def test_the_limits_pass_the_real_export_and_upload():
    recover = shared_path("bridge-archives") / "recover-2023-01-13T21--08--51Z_TESTDATA.zip"
    spelling = shared_path("bridge-archives") / "OCJByUtSrVTYtqObYp7XZV_J-mtbSpelling.zip"
    from bridge_downstream.ingest.safe_archive import SafeArchive

    for path in (recover, spelling):
        with SafeArchive(io.BytesIO(path.read_bytes())) as archive:
            assert archive.members


def test_too_many_rows_are_refused(registry, tmp_path):
    many = zip_bytes({"answers.json": [{"n": n} for n in range(11)]})
    _report, out, records = run_batch(
        tmp_path,
        registry,
        {"bad.zip": (many, mtb_metadata("bad-1", assessment="legacy-survey")), "good.zip": good_upload()},
        limits=ArchiveLimits(max_rows=10),
    )
    assert outcome(records, "bad.zip") == ("invalid", "too-many-rows: the archive gives more than 10 rows, the limit")
    assert read_dataset(out, "SurveyAnswers_v1") == []
    assert_good_processed(out)


def test_too_many_export_rows_are_refused(registry, tmp_path):
    lines = "".join(f'{{"LogId": "{n}"}}\n' for n in range(5))
    _, out, records = run_batch(
        tmp_path,
        registry,
        {
            "bad.zip": (export_zip({"FitbitSleepLogs_20240102.json": lines}), {"cohort": "adults_v1"}),
            "good.zip": (
                export_zip({"FitbitDevices_20240101.json": '{"ParticipantIdentifier": "p1"}\n'}),
                {"cohort": "adults_v1"},
            ),
        },
        profile="recover",
        limits=ArchiveLimits(max_rows=4),
    )
    assert outcome(records, "bad.zip") == ("invalid", "too-many-rows: the archive gives more than 4 rows, the limit")
    assert read_dataset(out, "FitbitSleepLogs") == []
    assert [r["ParticipantIdentifier"] for r in read_dataset(out, "FitbitDevices")] == ["p1"]


@pytest.mark.parametrize(
    "members,reason",
    [
        (
            {"extra/taskData.json": GOOD_TASK},
            "ambiguous-member: member 'extra/taskData.json' maps to a dataset by its file name but sits in a folder",
        ),
        (
            {"taskData.json": GOOD_TASK, "extra/taskData.json": GOOD_TASK},
            "ambiguous-member: members 'taskData.json' and 'extra/taskData.json' share the file name 'taskData.json'",
        ),
    ],
)
def test_member_that_could_pass_for_another_is_refused(registry, tmp_path, members, reason):
    _, out, records = run_batch(
        tmp_path, registry, {"bad.zip": (zip_bytes(members), mtb_metadata("bad-1")), "good.zip": good_upload()}
    )
    assert outcome(records, "bad.zip") == ("invalid", reason)
    assert_good_processed(out)


def test_subfolders_allowed_by_the_limits_and_unmapped_ones_pass(registry, tmp_path):
    nested = zip_bytes({"extra/taskData.json": GOOD_TASK, "__MACOSX/._notes.json": b"\x00\x05"})
    _, out, records = run_batch(
        tmp_path,
        registry,
        {"a.zip": (nested, mtb_metadata("nested-1"))},
        limits=ArchiveLimits(allow_subfolders=True),
    )
    assert outcome(records, "a.zip") == ("processed", None)
    (row,) = read_dataset(out, "TaskData_v1")
    assert (row["recordid"], row["sourcefile"]) == ("nested-1", "extra/taskData.json")
    unmapped = zip_bytes({"taskData.json": GOOD_TASK, "__MACOSX/._notes.json": b"\x00\x05"})
    (tmp_path / "default").mkdir()
    _, _, records = run_batch(tmp_path / "default", registry, {"b.zip": (unmapped, mtb_metadata("b-1"))})
    assert outcome(records, "b.zip") == ("processed", None)


def with_raw_name(data: bytes, written: bytes, raw: bytes) -> bytes:
    """The archive with a member's name replaced, in its local header and the central directory, by ``raw`` (same length)."""
    assert len(written) == len(raw) and data.count(written) == 2
    return data.replace(written, raw)


@pytest.mark.parametrize(
    "raw,shown",
    [
        (b"taskData.json\x00.exe", "taskData.json\\x00.exe' holds the control character U+0000"),
        (b"task\x1b[2JData.json", "task\\x1b[2JData.json' holds the control character U+001B"),
    ],
)
def test_member_name_with_a_control_character_is_refused_and_shown_escaped(registry, tmp_path, raw, shown):
    written = b"X" * len(raw)
    data = with_raw_name(zip_bytes({"taskData.json": GOOD_TASK, written.decode(): GOOD_TASK}), written, raw)
    _, out, records = run_batch(
        tmp_path, registry, {"bad.zip": (data, mtb_metadata("bad-1")), "good.zip": good_upload()}
    )
    status, reason = outcome(records, "bad.zip")
    assert status == "invalid" and reason == f"unsafe-member-name: member name '{shown}", reason
    assert_good_processed(out)


# -- 7. keys given twice -----------------------------------------------------------------


@pytest.mark.parametrize(
    "document,key",
    [
        (b'{"taskIdentifier": "number-match", "steps": [], "taskIdentifier": "x"}', "taskIdentifier"),
        (b'{"taskIdentifier": "number-match", "steps": [{"identifier": "a", "identifier": "b"}]}', "identifier"),
        # An escaped quote: the count cannot tell, json's pairs do.
        (b'{"taskIdentifier": "say \\"hi\\"", "steps": [], "steps": []}', "steps"),
    ],
)
def test_document_with_a_key_twice_is_invalid(registry, tmp_path, document, key):
    _, out, records = run_batch(
        tmp_path,
        registry,
        {"bad.zip": (zip_bytes({"taskData.json": document}), mtb_metadata("bad-1")), "good.zip": good_upload()},
    )
    assert outcome(records, "bad.zip") == (
        "invalid",
        f"duplicate-key: taskData.json gives the key '{key}' twice in one object",
    )
    assert_good_processed(out)


def test_same_key_in_different_objects_and_escaped_quotes_are_fine(registry, tmp_path):
    document = {
        "taskIdentifier": 'say "hi"',
        "steps": [{"identifier": "a", "responseTime": 1}, {"identifier": "b", "responseTime": 2}],
    }
    _, out, records = run_batch(
        tmp_path, registry, {"a.zip": (zip_bytes({"taskData.json": document}), mtb_metadata("good-1"))}
    )
    assert outcome(records, "a.zip") == ("processed", None)
    (row,) = read_dataset(out, "TaskData_v1")
    assert row["taskIdentifier"] == 'say "hi"' and len(row["steps"]) == 2


def test_export_line_with_a_key_twice_invalidates_the_export(registry, tmp_path):
    lines = '{"LogId": "1"}\n{"LogId": "2", "Type": "a", "LogId": "3"}\n'
    _, out, records = run_batch(
        tmp_path,
        registry,
        {
            "bad.zip": (export_zip({"FitbitSleepLogs_20240102.json": lines}), {"cohort": "adults_v1"}),
            "good.zip": (export_zip({"FitbitSleepLogs_20240101.json": '{"LogId": "0"}\n'}), {"cohort": "adults_v1"}),
        },
        profile="recover",
    )
    assert outcome(records, "bad.zip") == (
        "invalid",
        "duplicate-key: FitbitSleepLogs_20240102.json line 2 gives the key 'LogId' twice in one object",
    )
    assert [r["LogId"] for r in read_dataset(out, "FitbitSleepLogs")] == ["0"]


def sample_documents() -> list[tuple[str, bytes]]:
    """Every JSON member of the sample uploads, and of the real upload where it is present."""
    paths = [p for p in sorted((SAMPLES / "archives").glob("*.zip")) if zipfile.is_zipfile(p)]  # one is corrupt
    real = SHARED_DATA / "bridge-archives" / "OCJByUtSrVTYtqObYp7XZV_J-mtbSpelling.zip"
    documents = []
    for path in [*paths, real] if real.exists() else paths:
        with zipfile.ZipFile(path) as archive:
            documents += [(f"{path.name}:{n}", archive.read(n)) for n in archive.namelist() if n.endswith(".json")]
    return documents


def test_the_cheap_count_decides_every_sample_and_real_document():
    # Keys given twice are looked for by a count; json's slow look is for
    # documents the count cannot vouch for. No sample or real document needs it.
    documents = sample_documents()
    assert len(documents) >= 15
    for name, data in documents:
        assert kept_every_key(data, parse_json(data, name)), name
