"""Local storage keeps every key inside its root, as an S3 prefix would."""

import pytest

from bridge_downstream.common.storage import LocalStorage


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
    assert metadata == {"RecordId": "r1"}  # as written: ingest reads names case-insensitively, and refuses ambiguity


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


def test_open_read_gives_a_small_file_whole_and_streams_a_large_one(tmp_path, monkeypatch):
    import io

    import bridge_downstream.common.storage as storage_module

    monkeypatch.setattr(storage_module, "SMALL_FILE_BYTES", 64)
    storage = LocalStorage(tmp_path)
    storage.write_bytes("small.zip", b"s" * 64)
    storage.write_bytes("large.zip", bytes(range(256)) * 4)
    small = storage.open_read("small.zip")
    assert isinstance(small, io.BytesIO) and small.read() == b"s" * 64
    with storage.open_read("large.zip") as large:
        assert not isinstance(large, io.BytesIO)
        assert large.read(10) == bytes(range(10))
        large.seek(1000)
        assert large.read() == (bytes(range(256)) * 4)[1000:]
    assert storage.read_bytes("large.zip") == bytes(range(256)) * 4


def test_reading_leaves_no_file_open(tmp_path):
    import os

    storage = LocalStorage(tmp_path)
    storage.write_bytes("a.zip", b"archive", metadata={"recordid": "r1"})
    (tmp_path / "folder.zip").mkdir()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        storage.open_read("a.zip").close()
        storage.read_bytes("a.zip")
        storage.metadata("a.zip")
        with pytest.raises(IsADirectoryError):
            storage.open_read("folder.zip")
    assert len(os.listdir("/proc/self/fd")) == before


def test_open_read_and_metadata_of_missing_files_and_folders(tmp_path):
    storage = LocalStorage(tmp_path)
    (tmp_path / "folder.zip").mkdir()
    (tmp_path / "folder.zip.metadata.json").mkdir()
    with pytest.raises(FileNotFoundError):
        storage.open_read("missing.zip")
    with pytest.raises(IsADirectoryError, match="folder.zip"):
        storage.open_read("folder.zip")
    with pytest.raises(IsADirectoryError):
        storage.read_bytes("folder.zip")
    assert storage.metadata("folder.zip") == {}  # no sidecar file: no metadata
    assert storage.metadata("missing.zip") == {}
