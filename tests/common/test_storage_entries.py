"""A local listing accounts for every entry: regular files are objects; a
dangling or looping link, a FIFO, a link to a folder, a name that is not
UTF-8 or holds a control character is a refused entry with its reason --
never opened, never walked round, never dropped."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bridge_downstream.common.storage import LocalStorage, ObjectInfo, RefusedEntry, list_entries, local_entry

NOT_UTF8 = os.fsdecode(b"bad\xff.zip")


def finished_within(seconds: float, work):
    """``work()``'s result, failing (instead of hanging the run) if it takes longer."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the listing waited on an entry (a FIFO opened?)"
    return result[0]


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "in"
    (root / "real").mkdir(parents=True)
    (root / "a.zip").write_bytes(b"a")
    (root / "real" / "b.zip").write_bytes(b"bb")
    (root / "alias.zip").symlink_to("a.zip")
    (root / "dangling.zip").symlink_to("nowhere.zip")
    (root / "loop.zip").symlink_to("loop.zip")
    (root / "linked").symlink_to("real")
    os.mkfifo(root / "pipe.zip")
    (root / "new\nline.zip").write_bytes(b"n")
    (root / NOT_UTF8).write_bytes(b"x")
    (root / ".tmp-upload").write_bytes(b"in progress")
    return root


EXPECTED = [
    ObjectInfo("a.zip", 1),
    ObjectInfo("alias.zip", 1),
    RefusedEntry("bad\\xff.zip", "its name is not UTF-8 (shown with \\x escapes), so no key names it"),
    RefusedEntry("dangling.zip", "a symbolic link whose target does not exist"),
    RefusedEntry("linked/", "a symbolic link to a folder: links to folders are not followed"),
    RefusedEntry("loop.zip", "a symbolic link that loops (it leads back to itself)"),
    RefusedEntry("new\nline.zip", "its name holds the control character U+000A"),
    RefusedEntry("pipe.zip", "a FIFO (named pipe), not a regular file: reading it could wait for ever"),
    ObjectInfo("real/b.zip", 2),
]


def test_every_entry_is_an_object_or_refused_with_its_reason_in_key_order(folder):
    storage = LocalStorage(folder)
    assert finished_within(10, lambda: list(list_entries(storage, ""))) == EXPECTED
    # Keys sort as the walk yields them, and so do their URIs (the outcome spools rely on it).
    keys = [entry.key for entry in EXPECTED]
    assert keys == sorted(keys) and [storage.uri(k) for k in keys] == sorted(storage.uri(k) for k in keys)
    assert storage.uri("linked/").endswith("/in/linked/")


def test_list_gives_regular_files_only(folder):
    storage = LocalStorage(folder)
    assert finished_within(10, lambda: list(storage.list(""))) == [
        ObjectInfo("a.zip", 1),
        ObjectInfo("alias.zip", 1),
        ObjectInfo("new\nline.zip", 1),  # a regular file, as S3 would list it; the archive listing refuses it
        ObjectInfo("real/b.zip", 2),
    ]
    assert list(storage.list("real/")) == [ObjectInfo("real/b.zip", 2)]
    assert [e.key for e in list_entries(storage, "l")] == ["linked/", "loop.zip"]


def test_a_named_entry_is_judged_as_a_listed_one(folder):
    storage = LocalStorage(folder)
    by_key = {entry.key: entry for entry in EXPECTED}
    for name in ["a.zip", "alias.zip", "dangling.zip", "loop.zip", "pipe.zip", "new\nline.zip"]:
        assert finished_within(10, lambda name=name: local_entry(storage, name)) == by_key[name]
    assert local_entry(storage, NOT_UTF8) == by_key["bad\\xff.zip"]
    assert local_entry(storage, "real/b.zip") == ObjectInfo("real/b.zip", 2)
    assert local_entry(storage, "real") is None and local_entry(storage, "missing.zip") is None


def test_a_folder_that_cannot_be_read_is_named_and_the_walk_goes_on(folder, monkeypatch):
    (folder / "locked").mkdir()
    (folder / "locked" / "c.zip").write_bytes(b"c")
    (folder / "z.zip").write_bytes(b"z")
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("/locked"):  # as for a folder without read permission (tests may run as root)
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    entries = list(list_entries(LocalStorage(folder), ""))
    assert RefusedEntry("locked/", "a folder that cannot be read (Permission denied)") in entries
    assert entries[-2:] == [ObjectInfo("real/b.zip", 2), ObjectInfo("z.zip", 1)]


def test_other_storages_refuse_names_with_control_characters():
    class Listed:  # any storage (S3) lists only objects; names are judged the same way
        def list(self, prefix):
            names = ["a.zip", "b\r.zip", "c\x1b[31m.zip", "d\x9b31m.zip", "é.zip"]
            return iter([ObjectInfo(name, size) for size, name in enumerate(names)])

    assert list(list_entries(Listed(), "")) == [
        ObjectInfo("a.zip", 0),
        RefusedEntry("b\r.zip", "its name holds the control character U+000D"),
        RefusedEntry("c\x1b[31m.zip", "its name holds the control character U+001B"),
        RefusedEntry("d\x9b31m.zip", "its name holds the control character U+009B"),
        ObjectInfo("é.zip", 4),
    ]
