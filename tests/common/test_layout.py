"""Metadata is data, never a path: every value that becomes part of a key is
escaped as Hive and Spark escape partition values, reads back as itself, and
never leaves its folder; what no storage can hold is refused."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.ingest.invalid_sink import StorageInvalidSink

# Spark 3.5's ExternalCatalogUtils.escapePathName on Linux, character by character
# (checked against Spark itself in tests/publish/test_metadata_values.py).
SPARK_ESCAPED = {chr(c): f"%{c:02X}" for c in [*range(0x01, 0x20), *map(ord, "\"#%'*/:=?\\{[]^"), 0x7F]}
HOSTILE = ["../..", "..", ".", ".hidden", "a/b", "x=y", "50%", "%2F", "q?*#'\"", "tab\tnl\n", "{[^]}", "é ü", "a+b"]


def test_every_character_spark_escapes_is_escaped_and_no_other():
    for code in range(0x80):
        character = chr(code)
        assert layout.escape_path_name(character) == SPARK_ESCAPED.get(character, character), repr(character)
    assert layout.escape_path_name("../a/b=c%d") == "..%2Fa%2Fb%3Dc%25d"
    assert layout.escape_path_name("é}") == "é}"  # not ASCII, and "}", are left as Spark leaves them


def test_partition_folders_are_escaped_and_read_back_as_written():
    partition = {"assessmentid": "../../x=y/%", "year": 2024, "month": 3, "day": 2}
    path = layout.partition_path(partition)
    assert path == "assessmentid=..%2F..%2Fx%3Dy%2F%25/year=2024/month=03/day=02"
    assert layout.parse_partition_path(path) == {
        "assessmentid": "../../x=y/%",
        "year": "2024",
        "month": "03",
        "day": "02",
    }
    # A null or empty value is Hive's default partition, as Spark writes it.
    assert layout.partition_path({"cohort": None}) == layout.partition_path({"cohort": ""})
    assert layout.partition_path({"cohort": ""}) == "cohort=__HIVE_DEFAULT_PARTITION__"


def test_a_value_that_is_a_whole_name_never_is_dot_dot_or_hidden():
    assert layout.key_segment("..") == "%2E."
    assert layout.key_segment(".hidden") == "%2Ehidden"
    assert layout.key_segment("a.b") == "a.b"
    assert layout.published_dataset_prefix("../../x") == "published/%2E.%2F..%2Fx"
    assert layout.current_pointer_key("../x") == "published/%2E.%2Fx/CURRENT"
    assert layout.unescape_path_name("%2E.%2F..%2Fx") == "../../x"


def test_dataset_ids_in_keys_are_escaped():
    assert layout.dataset_prefix("a/b") == "json/dataset=a%2Fb"
    assert layout.table_prefix("D", "v1", "parquet", "../t") == "published/D/versions/v1/parquet/%2E.%2Ft"


@settings(max_examples=300, deadline=None)
@given(
    dataset_id=st.sampled_from(["TaskData_v1", "a/b", "..", ".x"]),
    value=st.one_of(st.sampled_from(HOSTILE), st.text(st.characters(codec="utf-8", exclude_characters="\0"))),
)
def test_a_part_key_stays_in_its_dataset_and_reads_back(dataset_id, value):
    try:
        key = layout.json_part_key(dataset_id, {"cohort": value, "year": 2024}, "tag", 3)
    except layout.UnusableKey as error:  # only for what no storage can hold
        assert "bytes" in str(error)
        return
    prefix = layout.dataset_prefix(dataset_id) + "/"
    assert key.startswith(prefix) and posixpath.normpath(key) == key
    assert not any(segment in ("", ".", "..") for segment in key.split("/"))
    folders = key[len(prefix) :].split("/")
    assert len(folders) == 3 and folders[2] == "part-tag-00003.ndjson"
    read_back = value or layout.HIVE_DEFAULT_PARTITION  # Hive's name for an empty value
    assert layout.parse_partition_path("/".join(folders[:2])) == {"cohort": read_back, "year": "2024"}


def test_keys_no_storage_can_hold_are_refused_with_the_reason():
    with pytest.raises(layout.UnusableKey, match="NUL"):
        layout.json_partition_prefix("D", {"assessmentid": "a\0b"})
    with pytest.raises(layout.UnusableKey, match="is 313 bytes long; a file system names at most 255"):
        layout.json_partition_prefix("D", {"assessmentid": "x" * 300})
    with pytest.raises(layout.UnusableKey, match="longer than an S3 key"):
        layout.json_partition_prefix("D", {f"p{i}": "x" * 200 for i in range(6)})
    with pytest.raises(layout.UnusableKey, match="would leave its folder"):
        layout.checked_key("json", "a/../../b")
    assert layout.json_partition_prefix("D", {"assessmentid": "x" * 242}).endswith("x" * 242)  # 255 bytes: fine


def test_invalid_entries_are_keyed_by_a_digest_and_hold_the_record_id(tmp_path):
    identity = "ab" * 32
    key = layout.invalid_key("../../../etc/passwd", identity)
    assert key.startswith("invalid/") and key.count("/") == 1 and len(posixpath.basename(key)) == 32 + len(".json")
    assert layout.invalid_key("../../../etc/passwd", identity) == key  # the same record twice: one entry
    assert layout.invalid_key("rec-1", identity) != layout.invalid_key("rec-2", identity)
    assert layout.invalid_key("rec-1", identity) != layout.invalid_key("rec-1", "cd" * 32)
    storage = LocalStorage(tmp_path / "root")
    sink = StorageInvalidSink(storage)
    entry = {"identity": identity, "validation_result": {"recordId": "../../../etc/passwd"}, "reason": "x"}
    sink.send(entry)
    sink.send(entry)
    assert [(k, e["validation_result"]["recordId"]) for k, e in sink.entries()] == [(key, "../../../etc/passwd")]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == [f"root/{key}"]
