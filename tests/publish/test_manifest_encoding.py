"""Manifests are read and written with orjson (issue 22): every manifest
written before by json's encoder still reads to the same manifest, and keys
and values json writes but orjson refuses or widens still read exactly."""

from __future__ import annotations

import json
import math
from dataclasses import fields

import orjson

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish.manifest import (
    PublishedFile,
    PublishedFiles,
    PublishedTable,
    PublishManifest,
    _file_record,
    listed_file_keys,
    read_manifest,
)

DATASET, VERSION = "D_v1", "20261205T000000000000Z"
ODD_VALUE = 'Zürich "quoted" back\\slash 日本'


def _file(number: int, fmt: str = "parquet", site: str = "plain") -> PublishedFile:
    return PublishedFile(
        key=f"published/{DATASET}/versions/{VERSION}/{fmt}/t/site={site}/day={number:02d}/part-{number}.{fmt}",
        format=fmt,
        size=100 + number,
        md5=f"{number:032x}",
        sha256=f"{number:064x}",
        rows=number,
        partition={"site": site, "day": f"{number:02d}"},  # not in name order: the writer sorts them
    )


def _manifest(**extra) -> PublishManifest:
    listed = [_file(1), _file(2, site=ODD_VALUE), _file(2, "csv", site=ODD_VALUE), _file(3, site="é")]
    tables = {
        "t": PublishedTable("t", DATASET, None, [{"name": "x", "type": "bigint"}], ["site", "day"], 6, listed),
        "t_e": PublishedTable("t_e", DATASET, "t", [], [], 4, PublishedFiles([_file(7, site=ODD_VALUE)])),
        "empty": PublishedTable("empty", DATASET, None, [], [], 0, []),
    }
    return PublishManifest(DATASET, VERSION, "run", "2026-12-05T00:00:00+00:00", "reg-1", tables=tables, **extra)


def _listed(manifest: PublishManifest) -> dict[str, list[PublishedFile]]:
    return {name: list(table.files) for name, table in manifest.tables.items()}


def _stored(storage: LocalStorage, manifest: PublishManifest) -> bytes:
    manifest.store(storage, layout.manifest_key(DATASET, VERSION))
    return storage.read_bytes(layout.manifest_key(DATASET, VERSION))


def _as_json_wrote_it(document: bytes) -> bytes:
    """``document`` with each file line as the encoder before orjson wrote
    it: ``json.dumps(record, sort_keys=True)``, ASCII with \\u escapes."""
    lines = []
    for line in document.decode().split("\n"):
        body = line.lstrip()
        if body.startswith('{"format":'):
            comma = "," if body.endswith(",") else ""
            record = json.loads(body.removesuffix(","))
            body = json.dumps(record, sort_keys=True) + comma
            line = line[: len(line) - len(line.lstrip())] + body
        lines.append(line)
    return "\n".join(lines).encode()


def test_the_spelled_out_file_record_has_every_field_of_a_file():
    record = _file_record(_file(1, site=ODD_VALUE))
    assert list(record) == sorted(f.name for f in fields(PublishedFile))
    assert PublishedFile(**record) == _file(1, site=ODD_VALUE)


def test_a_stored_manifest_reads_back_as_it_was(tmp_path):
    storage = LocalStorage(tmp_path)
    manifest = _manifest(plan={"tables": [{"name": "t"}]}, record_counts=[{"read": 3}])
    stored = _stored(storage, manifest)
    back = read_manifest(storage, DATASET, VERSION)
    assert _listed(back) == _listed(manifest)
    assert [f.key for f in back.tables["t"].files] == [f.key for f in manifest.tables["t"].files]
    assert back.tables["t"].files[1].partition == {"site": ODD_VALUE, "day": "02"}
    assert [f.size for f in back.tables["t"].files] == [101, 102, 102, 103]
    assert all(isinstance(f, PublishedFile) for f in back.tables["t"].files)
    assert back.tables["empty"].files == []
    assert back.plan == manifest.plan and back.record_counts == [{"read": 3}]
    # the same document as the indenting encoder's
    assert json.loads(stored) == json.loads(manifest.to_json())


def test_file_lines_are_compact_utf8_with_the_partition_in_name_order(tmp_path):
    stored = _stored(LocalStorage(tmp_path), _manifest())
    line = next(line for line in stored.split(b"\n") if "Zürich".encode() in line)
    assert line.lstrip().startswith(b'{"format":"parquet","key":"published/')
    assert b'"partition":{"day":"02","site":"Z\xc3\xbcrich \\"quoted\\" back\\\\slash ' in line


def test_a_manifest_json_wrote_reads_to_the_manifest_orjson_writes(tmp_path):
    storage = LocalStorage(tmp_path)
    manifest = _manifest()
    new = _stored(storage, manifest)
    old = _as_json_wrote_it(new)
    assert b'{"format": "parquet", "key": ' in old and b'Z\\u00fcrich \\"quoted\\" back\\\\slash' in old
    assert old.isascii() and not new.isascii()
    keys = {f.key for table in manifest.tables.values() for f in table.files}
    assert listed_file_keys(storage, DATASET, VERSION) == keys
    storage.write_bytes(layout.manifest_key(DATASET, VERSION), old)
    from_old = read_manifest(storage, DATASET, VERSION)
    assert from_old == PublishManifest.from_json(new)
    assert _listed(from_old) == _listed(manifest)
    assert listed_file_keys(storage, DATASET, VERSION) == keys


def test_keys_with_quotes_backslashes_and_non_ascii_are_listed_exactly_from_lines(tmp_path, monkeypatch):
    storage = LocalStorage(tmp_path)
    odd = PublishedFile(f"published/{ODD_VALUE}/\t{ODD_VALUE}.parquet", "parquet", 1, "m", "s", 1, {})
    manifest = _manifest()
    manifest.tables["t"].files = [odd, _file(1)]
    new = _stored(storage, manifest)
    old = _as_json_wrote_it(new)
    expected = {odd.key, _file(1).key, _file(7, site=ODD_VALUE).key}
    with monkeypatch.context() as patched:  # read from the file lines, not by reading the manifest in full
        patched.setattr(PublishManifest, "from_json", _not_read_in_full)
        assert listed_file_keys(storage, DATASET, VERSION) == expected
        storage.write_bytes(layout.manifest_key(DATASET, VERSION), old)
        assert listed_file_keys(storage, DATASET, VERSION) == expected
    assert read_manifest(storage, DATASET, VERSION).tables["t"].files[0] == odd


def _not_read_in_full(_text):
    raise AssertionError("the manifest was read in full")


def test_a_plan_holding_nan_or_infinity_still_reads(tmp_path):
    storage = LocalStorage(tmp_path)
    manifest = _manifest(plan={"bounds": [float("nan"), float("inf"), -float("inf")]}, quality={"ratio": math.nan})
    stored = _stored(storage, manifest)
    assert b"NaN" in stored and b"-Infinity" in stored
    back = read_manifest(storage, DATASET, VERSION)
    low, high, negative = back.plan["bounds"]
    assert math.isnan(low) and high == math.inf and negative == -math.inf
    assert math.isnan(back.quality["ratio"])
    assert _listed(back) == _listed(manifest)


def test_integers_beyond_64_bits_read_exactly(tmp_path):
    storage = LocalStorage(tmp_path)
    wide = {"above": 2**70, "below": -(2**63) - 1, "unsigned_max": 2**64 - 1, "signed_min": -(2**63)}
    manifest = _manifest(plan={"wide": wide}, rescued_values={"$.n": 3})
    manifest.tables["t"].columns = [{"name": "x", "type": "decimal(38,0)", "max": 10**30}]
    _stored(storage, manifest)
    # what the fallback is for: orjson alone widens it to a double
    assert (
        type(orjson.loads(storage.read_bytes(layout.manifest_key(DATASET, VERSION)))["plan"]["wide"]["above"]) is float
    )
    back = read_manifest(storage, DATASET, VERSION)
    assert back.plan == {"wide": wide}
    assert all(type(value) is int for value in back.plan["wide"].values())
    assert back.tables["t"].columns[0]["max"] == 10**30
    assert _listed(back) == _listed(manifest)


def test_a_large_float_stays_a_float(tmp_path):
    storage = LocalStorage(tmp_path)
    _stored(storage, _manifest(plan={"large": 1e19, "huge": 1.5e300}))
    plan = read_manifest(storage, DATASET, VERSION).plan
    assert plan == {"large": 1e19, "huge": 1.5e300}
    assert type(plan["large"]) is float and type(plan["huge"]) is float
