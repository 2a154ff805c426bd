"""Local storage keeps every key inside its root, as an S3 prefix would."""

import pytest

from bridge_downstream.storage import LocalStorage


def test_keys_stay_inside_the_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "root-sibling").mkdir()
    storage = LocalStorage(root)
    assert storage.uri("json/dataset=X/a.ndjson") == f"file://{root.as_posix()}/json/dataset=X/a.ndjson"
    assert storage.path("a/../b.json") == root / "b.json"
    for key in ("../root-sibling/x.json", "../x.json", "/etc/passwd", "a/../../x"):
        with pytest.raises(ValueError, match="escapes the storage root"):
            storage.path(key)
    storage.write_bytes("deep/key.json", b"{}", metadata={"RecordId": "r1"})
    stream, metadata = storage.open_read_with_metadata("deep/key.json")
    with stream:
        assert stream.read() == b"{}"
    assert metadata == {"recordid": "r1"}
