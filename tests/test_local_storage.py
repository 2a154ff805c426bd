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


def test_move_in_renames_the_file_into_place(tmp_path):
    storage = LocalStorage(tmp_path / "root")
    staged = tmp_path / "staged.ndjson"
    staged.write_bytes(b'{"a":1}\n')
    storage.move_in(str(staged), "json/dataset=X/part-0.ndjson")
    assert storage.read_bytes("json/dataset=X/part-0.ndjson") == b'{"a":1}\n'
    assert not staged.exists()


def test_move_in_copies_across_file_systems(tmp_path, monkeypatch):
    import errno
    import os

    real_replace, renamed = os.replace, []

    def rename_refused_across_file_systems(source, target):
        renamed.append(source)
        if source == str(staged):  # the staged file lives on another file system
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(source, target)  # the copy's own temporary file, beside the target

    storage = LocalStorage(tmp_path / "root")
    staged = tmp_path / "staged.ndjson"
    staged.write_bytes(b'{"a":2}\n')
    monkeypatch.setattr(os, "replace", rename_refused_across_file_systems)
    storage.move_in(str(staged), "json/dataset=X/part-1.ndjson")
    assert storage.read_bytes("json/dataset=X/part-1.ndjson") == b'{"a":2}\n'
    assert not staged.exists()
    assert renamed[0] == str(staged) and len(renamed) == 2
