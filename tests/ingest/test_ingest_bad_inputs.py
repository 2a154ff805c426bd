"""Every kind of bad archive gets a clear reason, and the batch goes on."""

import io
import json
import zipfile

import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.limits import DEFAULT_LIMITS, ArchiveLimits
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream.ingest.run import run_ingest
from support import (
    invalid_entries,
    mtb_metadata,
    read_dataset,
    write_archive,
)

GOOD_TASK = {"taskIdentifier": "number-match", "steps": [{"identifier": "a", "responseTime": 1.0}]}


def raw_zip(entries: list[tuple[str, bytes]], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            archive.writestr(info, data)
    return buffer.getvalue()


def run_with_bad(tmp_path, registry, bad_name: str, bad_bytes: bytes | None, *, metadata=None, limits=DEFAULT_LIMITS):
    """Ingest one good archive and one bad one; returns (report, output)."""
    folder = tmp_path / "in"
    write_archive(folder / "good.zip", {"taskData.json": GOOD_TASK}, mtb_metadata("good-1"))
    if bad_bytes is not None:
        (folder / bad_name).write_bytes(bad_bytes)
    if metadata is not False:
        (folder / f"{bad_name}.metadata.json").write_text(json.dumps(metadata or mtb_metadata("bad-1")))
    storage = LocalStorage(folder)
    inputs = [ArchiveInput(storage, "good.zip"), ArchiveInput(storage, bad_name)]
    output = LocalStorage(tmp_path / "out")
    report = run_ingest(
        inputs,
        registry=registry,
        profile=load_profile("mtb"),
        output=output,
        sink=StorageInvalidSink(output),
        workers=1,
        limits=limits,
    )
    return report, tmp_path / "out"


def assert_only_bad_is_invalid(report, output, reason_fragment: str):
    assert report["archives"] == {"total": 2, "processed": 1, "invalid": 1, "skipped": 0}
    (entry,) = report["invalid"]
    assert reason_fragment in entry["reason"], entry["reason"]
    assert [r["recordid"] for r in read_dataset(output, "TaskData_v1")] == ["good-1"]
    sink = invalid_entries(output)
    assert len(sink) == 1 and reason_fragment in next(iter(sink.values()))["reason"]


def test_corrupt_zip(registry, tmp_path):
    report, out = run_with_bad(tmp_path, registry, "bad.zip", b"PK\x03\x04garbage that is not a zip")
    assert_only_bad_is_invalid(report, out, "corrupt-archive: not a readable ZIP archive")


def test_truncated_zip(registry, tmp_path):
    data = raw_zip([("taskData.json", json.dumps(GOOD_TASK).encode() * 50)])
    report, out = run_with_bad(tmp_path, registry, "bad.zip", data[: len(data) // 2])
    assert_only_bad_is_invalid(report, out, "corrupt-archive")


def test_zip_bomb_by_compression_ratio(registry, tmp_path):
    data = raw_zip([("taskData.json", b" " * (8 << 20))])
    report, out = run_with_bad(tmp_path, registry, "bad.zip", data)
    assert_only_bad_is_invalid(report, out, "zip-bomb: member 'taskData.json' has compression ratio")


def test_zip_bomb_whose_header_lies_about_its_size(registry, tmp_path):
    # The central directory says 100 bytes; the member inflates to 8 MiB.
    data = bytearray(raw_zip([("taskData.json", b" " * (8 << 20))]))
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")
    local = data.find(b"PK\x03\x04")
    data[local + 22 : local + 26] = (100).to_bytes(4, "little")
    report, _ = run_with_bad(tmp_path, registry, "bad.zip", bytes(data))
    assert report["archives"]["invalid"] == 1
    assert report["invalid"][0]["reason"].split(":")[0] in ("zip-bomb", "corrupt-archive")


def test_damaged_deflate_data(registry, tmp_path):
    # Intact headers and sizes, damaged compressed bytes: zlib's own error,
    # which is not an OSError, must not stop the batch.
    data = bytearray(raw_zip([("taskData.json", json.dumps({**GOOD_TASK, "pad": list(range(2000))}).encode())]))
    start = data.find(b"PK\x03\x04") + 30 + len("taskData.json")
    data[start + 2 : start + 12] = bytes(b ^ 0xFF for b in data[start + 2 : start + 12])
    report, out = run_with_bad(tmp_path, registry, "bad.zip", bytes(data))
    assert_only_bad_is_invalid(
        report, out, "corrupt-archive: member 'taskData.json' cannot be read (Error -3 while decompressing data"
    )


def test_total_inflated_size_limit(registry, tmp_path):
    data = raw_zip([(f"f{i}.json", b"[" + b"1," * 40_000 + b"1]") for i in range(5)])
    report, out = run_with_bad(tmp_path, registry, "bad.zip", data, limits=ArchiveLimits(max_total_bytes=300_000))
    assert_only_bad_is_invalid(report, out, "zip-bomb: members inflate to")


@pytest.mark.parametrize(
    "name,expected",
    [
        ("../../etc/passwd", "climbs out of the archive"),
        ("/etc/passwd", "is an absolute path"),
        ("C:\\evil.json", "is an absolute path"),
        ("dir\\taskData.json", "uses backslashes"),
    ],
)
def test_unsafe_member_names(registry, tmp_path, name, expected):
    data = raw_zip([("taskData.json", json.dumps(GOOD_TASK).encode()), (name, b"{}")])
    report, out = run_with_bad(tmp_path, registry, "bad.zip", data)
    assert_only_bad_is_invalid(report, out, f"unsafe-member-name: member name '{name}' {expected}")


def test_duplicate_member_names(registry, tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is asked to write
        data = raw_zip([("taskData.json", json.dumps(GOOD_TASK).encode()), ("taskData.json", b"{}")])
    report, out = run_with_bad(tmp_path, registry, "bad.zip", data)
    assert_only_bad_is_invalid(report, out, "duplicate-member: member 'taskData.json' occurs more than once")


def test_member_not_utf8(registry, tmp_path):
    data = raw_zip([("taskData.json", b'{"taskIdentifier": "caf\xe9"}')])
    report, out = run_with_bad(tmp_path, registry, "bad.zip", data)
    assert_only_bad_is_invalid(report, out, "not-utf8: taskData.json is not UTF-8 text")


def test_member_not_json(registry, tmp_path):
    data = raw_zip([("taskData.json", b'{"taskIdentifier": ')])
    report, out = run_with_bad(tmp_path, registry, "bad.zip", data)
    assert_only_bad_is_invalid(report, out, "not-json: taskData.json is not JSON")


@pytest.mark.parametrize(
    "text,reason",
    [
        (
            b'{"taskIdentifier": "number-match", "score": NaN}',
            "not-json: taskData.json is not JSON (unexpected character",
        ),
        (
            b'{"taskIdentifier": "number-match", "score": 1e400}',
            "not-json: taskData.json is not JSON (number is infinity",
        ),
        (b'{"taskIdentifier": "\\ud800"}', "not-json: taskData.json is not JSON (no low surrogate in string"),
        (
            b'{"taskIdentifier": "number-match"} {}',
            "not-json: taskData.json is not JSON (unexpected content after document",
        ),
    ],
)
def test_member_that_is_not_strict_json(registry, tmp_path, text, reason):
    # Python's json would take these; Spark, Arrow and Athena could not read the rows.
    report, out = run_with_bad(tmp_path, registry, "bad.zip", raw_zip([("taskData.json", text)]))
    assert_only_bad_is_invalid(report, out, reason)


def test_member_with_a_byte_order_mark_is_read(registry, tmp_path):
    folder = tmp_path / "in"
    (folder).mkdir()
    (folder / "bom.zip").write_bytes(raw_zip([("taskData.json", b"\xef\xbb\xbf" + json.dumps(GOOD_TASK).encode())]))
    (folder / "bom.zip.metadata.json").write_text(json.dumps(mtb_metadata("bom-1")))
    output = LocalStorage(tmp_path / "out")
    report = run_ingest(
        [ArchiveInput(LocalStorage(folder), "bom.zip")],
        registry=registry,
        profile=load_profile("mtb"),
        output=output,
        sink=StorageInvalidSink(output),
        workers=1,
    )
    assert report["archives"]["processed"] == 1
    (row,) = read_dataset(tmp_path / "out", "TaskData_v1")
    assert (row["taskIdentifier"], row["recordid"]) == ("number-match", "bom-1")


def test_empty_archive(registry, tmp_path):
    report, out = run_with_bad(tmp_path, registry, "bad.zip", raw_zip([]))
    assert_only_bad_is_invalid(report, out, "empty-archive: the archive holds no files")


def test_oversized_member(registry, tmp_path):
    data = raw_zip(
        [("taskData.json", json.dumps({**GOOD_TASK, "pad": "x" * 5000}).encode())], compression=zipfile.ZIP_STORED
    )
    report, out = run_with_bad(tmp_path, registry, "bad.zip", data, limits=ArchiveLimits(max_member_bytes=1000))
    assert_only_bad_is_invalid(report, out, "oversized-member: member 'taskData.json' inflates to")


def test_missing_sidecar(registry, tmp_path):
    data = raw_zip([("taskData.json", json.dumps(GOOD_TASK).encode())])
    report, out = run_with_bad(tmp_path, registry, "bad.zip", data, metadata=False)
    assert_only_bad_is_invalid(
        report,
        out,
        "no Bridge metadata: expected the S3 object's metadata, or locally a sidecar file bad.zip.metadata.json",
    )


def test_incomplete_sidecar(registry, tmp_path):
    data = raw_zip([("taskData.json", json.dumps(GOOD_TASK).encode())])
    report, out = run_with_bad(
        tmp_path, registry, "bad.zip", data, metadata={"recordid": "bad-1", "assessmentid": "number-match"}
    )
    assert_only_bad_is_invalid(report, out, "Bridge metadata is incomplete: missing assessmentrevision, uploadedon")


@pytest.mark.parametrize(
    "sidecar,reason",
    [
        (b'{"recordid": "bad-1",', "unreadable Bridge metadata: bad.zip.metadata.json is not JSON"),
        (b'["recordid", "bad-1"]', "unreadable Bridge metadata: bad.zip.metadata.json is not a JSON object"),
        (
            b'{"recordid": "bad-\\ud800"}',
            "unreadable Bridge metadata: bad.zip.metadata.json is not JSON (no low surrogate in string",
        ),
    ],
)
def test_damaged_sidecar(registry, tmp_path, sidecar, reason):
    data = raw_zip([("taskData.json", json.dumps(GOOD_TASK).encode())])
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.zip.metadata.json").write_bytes(sidecar)
    report, out = run_with_bad(tmp_path, registry, "bad.zip", data, metadata=False)
    assert_only_bad_is_invalid(report, out, reason)


def test_unparseable_upload_date(registry, tmp_path):
    data = raw_zip([("taskData.json", json.dumps(GOOD_TASK).encode())])
    report, out = run_with_bad(
        tmp_path, registry, "bad.zip", data, metadata=mtb_metadata("bad-1", uploaded_on="yesterday")
    )
    assert_only_bad_is_invalid(report, out, "Bridge metadata uploadedon 'yesterday' is not an ISO 8601 timestamp")


def test_archive_with_no_mapped_file_is_skipped_with_the_reason(registry, tmp_path):
    data = raw_zip([("info.json", b"{}")])
    report, _ = run_with_bad(tmp_path, registry, "bad.zip", data)
    assert report["archives"] == {"total": 2, "processed": 1, "invalid": 0, "skipped": 1}
    assert report["skipped"][0]["reason"].startswith(
        "no file of the archive gives rows (info.json: no schema for 'info.json'"
    )


def test_bad_line_in_an_export_invalidates_the_export_and_rolls_back_its_rows(registry, tmp_path):
    folder = tmp_path / "in"
    write_archive(
        folder / "good.zip",
        {"FitbitDevices_20240101.json": '{"ParticipantIdentifier": "p1"}\n'},
        {"cohort": "adults_v1"},
    )
    write_archive(
        folder / "bad.zip",
        {
            "FitbitDevices_20240102.json": '{"ParticipantIdentifier": "p2"}\n',
            "FitbitSleepLogs_20240102.json": '{"ok": 1}\nnot json\n',
        },
        {"cohort": "adults_v1"},
    )
    storage = LocalStorage(folder)
    output = LocalStorage(tmp_path / "out")
    report = run_ingest(
        [ArchiveInput(storage, "bad.zip"), ArchiveInput(storage, "good.zip")],
        registry=registry,
        profile=load_profile("recover"),
        output=output,
        sink=StorageInvalidSink(output),
        workers=1,
    )
    assert report["archives"] == {"total": 2, "processed": 1, "invalid": 1, "skipped": 0}
    assert report["invalid"][0]["reason"].startswith("not-json: FitbitSleepLogs_20240102.json line 2 is not JSON")
    # The rows the bad export wrote before its bad line were rolled back.
    assert [r["ParticipantIdentifier"] for r in read_dataset(tmp_path / "out", "FitbitDevices")] == ["p1"]
    assert read_dataset(tmp_path / "out", "FitbitSleepLogs") == []
