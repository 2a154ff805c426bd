"""Every object LocalStorage writes gets the mode a file the user creates gets
(0644 under umask 022, 0664 under 002), not the 0600 of the temporary file it
is written through."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from bridge_downstream.common.storage import LocalStorage, new_file_mode

MODES = [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)]


@pytest.fixture
def umask():
    """Set the process's umask for one test; the previous one is restored after."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), MODES)
def test_every_write_path_follows_the_umask(umask, tmp_path, mask, expected):
    umask(mask)
    assert new_file_mode() == expected
    storage = LocalStorage(tmp_path / "root")
    storage.write_bytes("a/written.json", b"{}", metadata={"recordid": "r"})
    source = tmp_path / "source.bin"
    source.write_bytes(b"data")
    source.chmod(0o600)
    storage.upload_file(str(source), "a/uploaded.bin")
    storage.copy("a/uploaded.bin", "b/copied.bin")
    handle, moved = tempfile.mkstemp(dir=tmp_path)  # 0600, as the pipeline's spools are
    os.close(handle)
    storage.move_in(moved, "c/moved.bin")
    written = sorted(p.relative_to(storage.root).as_posix() for p in storage.root.rglob("*") if p.is_file())
    assert written == [
        "a/uploaded.bin",
        "a/written.json",
        "a/written.json.metadata.json",
        "b/copied.bin",
        "c/moved.bin",
    ]
    assert {name: mode(storage.root / name) for name in written} == dict.fromkeys(written, expected)
    assert (storage.root / "a/uploaded.bin").read_bytes() == b"data"


def test_the_umask_is_read_without_being_changed(umask):
    umask(0o027)
    assert new_file_mode() == 0o640
    assert os.umask(0o027) == 0o027  # still what the test set
