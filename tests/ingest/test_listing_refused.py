"""The archive listing accounts for every entry: what it cannot use (a FIFO, a
dangling or looping link, a linked folder, a name that is not UTF-8 or holds
a newline) is an input skipped with its reason, in its place, while every
other archive of the folder is processed."""

from __future__ import annotations

import os
import shutil
import threading

from bridge_downstream.common.storage import LocalStorage, ObjectInfo, RefusedEntry
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.ingest import (
    SKIPPED,
    ArchiveListing,
    StorageInvalidSink,
    read_run_records,
    run_ingest,
)
from support import SAMPLES

REFUSED = {
    "bad\\xff.zip": "its name is not UTF-8 (shown with \\x escapes), so no key names it",
    "gone.zip": "a symbolic link whose target does not exist",
    "loop.zip": "a symbolic link that loops (it leads back to itself)",
    "more/": "a symbolic link to a folder: links to folders are not followed",
    "new\nline.zip": "its name holds the control character U+000A",
    "pipe.zip": "a FIFO (named pipe), not a regular file: reading it could wait for ever",
}


def finished_within(seconds: float, work):
    result: list = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the run waited on an entry (a FIFO opened?)"
    return result[0]


def hostile_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for source, name in [("rec-0001-number-match.zip", "good.zip"), ("rec-0002-number-match-v3.zip", "z-good.zip")]:
        shutil.copy(SAMPLES / "archives" / source, folder / name)
        shutil.copy(SAMPLES / "archives" / f"{source}.metadata.json", folder / f"{name}.metadata.json")
    shutil.copy(folder / "good.zip", folder / os.fsdecode(b"bad\xff.zip"))
    shutil.copy(folder / "good.zip", folder / "new\nline.zip")
    (folder / "gone.zip").symlink_to("nowhere.zip")
    (folder / "loop.zip").symlink_to("loop.zip")
    (tmp_path / "elsewhere").mkdir()
    (folder / "more").symlink_to(tmp_path / "elsewhere")
    os.mkfifo(folder / "pipe.zip")
    os.mkfifo(folder / "notes.fifo")  # not named as an archive: not one, as notes.txt would not be
    return folder


def test_refused_entries_are_inputs_with_their_reason_in_key_order(tmp_path):
    listing = ArchiveListing.of_storage(LocalStorage(hostile_folder(tmp_path)), (".zip",))
    inputs = finished_within(10, lambda: list(listing))
    assert [(inp.key, inp.refused) for inp in inputs] == sorted(
        [("good.zip", None), ("z-good.zip", None), *REFUSED.items()]
    )
    size = (tmp_path / "in" / "good.zip").stat().st_size + (tmp_path / "in" / "z-good.zip").stat().st_size
    assert listing.total_bytes == size  # refused entries have no size
    # A worker's share and a view of it carry the reasons too.
    assert [(inp.key, inp.refused) for inp in listing[1::3]] == [(i.key, i.refused) for i in inputs[1::3]]
    assert listing[-1].key == "z-good.zip" and listing[-2].refused == REFUSED["pipe.zip"]


def test_the_listing_spools_any_key_and_reason(tmp_path):
    entries = [
        ObjectInfo("a.zip", 3),
        RefusedEntry("b\n\\x.zip", 'reason with "quotes"\nand a newline'),
        ObjectInfo("c.zip", 4),
    ]
    listing = ArchiveListing(LocalStorage(tmp_path), entries)
    assert [(inp.key, inp.refused) for inp in listing] == [
        ("a.zip", None),
        ("b\n\\x.zip", 'reason with "quotes"\nand a newline'),
        ("c.zip", None),
    ]
    assert listing.total_bytes == 7


def test_a_run_reports_every_refused_entry_as_skipped_and_processes_the_rest(registry, tmp_path):
    folder = hostile_folder(tmp_path)
    output = LocalStorage(tmp_path / "out")
    listing = ArchiveListing.of_storage(LocalStorage(folder), (".zip",))
    report = finished_within(
        120,
        lambda: run_ingest(
            listing,
            registry=registry,
            profile=load_profile("mtb"),
            output=output,
            sink=StorageInvalidSink(output),
            workers=2,
        ),
    )
    assert report["archives"] == {"total": 8, "processed": 2, "invalid": 0, "skipped": 6}
    prefix = LocalStorage(folder).uri("")
    assert {e["source"][len(prefix) + 1 :]: e["reason"] for e in report["skipped"]} == {
        # a folder's URI keeps its "/"
        key: reason
        for key, reason in REFUSED.items()
    }
    records = list(read_run_records(output, report["run_id"]))
    assert [r["source"] for r in records] == sorted(r["source"] for r in records) and len(records) == 8
    by_name = {r["source"][len(prefix) + 1 :]: r for r in records}
    assert by_name["good.zip"]["status"] == by_name["z-good.zip"]["status"] == "processed"
    assert by_name["good.zip"]["recordid"] == "rec-0001" and by_name["good.zip"]["datasets"]["TaskData_v1"] > 0
    assert all(by_name[key]["status"] == SKIPPED for key in REFUSED)
