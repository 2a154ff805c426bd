"""A run's account of every archive: spooled per task, merged into the records
file, the ledger, the invalid sink and a report whose size does not grow with
the number of archives."""

import json
import os
import shutil
import tempfile

import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.ingest import outcomes as ingest_outcomes
from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
from bridge_downstream.ingest.listing import ArchiveInput, ArchiveListing
from bridge_downstream.ingest.outcomes import read_run_records
from bridge_downstream.ingest.part_writer import PartWriter
from bridge_downstream.ingest.run import run_ingest
from bridge_downstream_cli import pipeline_commands as cli
from support import SAMPLES, ingest_folder


def test_records_file_has_every_archive_once_in_source_order(sample_run):
    output, report = sample_run
    records = list(read_run_records(LocalStorage(output), report["run_id"]))
    names = [r["source"].rsplit("/", 1)[-1] for r in records]
    assert names == sorted(p.name for p in (SAMPLES / "archives").glob("*.zip"))
    statuses = {r["source"].rsplit("/", 1)[-1]: r["status"] for r in records}
    assert statuses["rec-0005-invalid-response-time.zip"] == "invalid"
    assert sum(1 for s in statuses.values() if s == "processed") == report["archives"]["processed"] == 5
    # The processed archives' rows add up to the datasets' counts in the report.
    totals: dict[str, int] = {}
    for record in records:
        for dataset, rows in record["datasets"].items():
            totals[dataset] = totals.get(dataset, 0) + rows
    assert totals == {d: e["rows"] for d, e in report["datasets"].items()}
    invalid = next(r for r in records if r["status"] == "invalid" and r["recordid"] == "rec-0005")
    assert invalid["reason"] == "failed validation: taskData.json" and "invalid_entry" not in invalid
    assert invalid["errors"]["taskData.json"] == report["invalid"][0]["errors"]["taskData.json"]


def test_ledger_parts_and_spools(sample_run):
    from bridge_downstream.ingest.outcomes import IngestLedger

    output, report = sample_run
    ledger = (output / layout.LEDGER_PREFIX / f"{report['run_id']}.jsonl").read_text().splitlines()
    assert len(ledger) == 5
    digests = (output / layout.LEDGER_PREFIX / f"{report['run_id']}.digests").read_bytes()
    assert digests[16:] == b"".join(IngestLedger.digest(json.loads(line)["identity"]) for line in ledger)
    assert (
        int.from_bytes(digests[8:16], "big")
        == (output / layout.LEDGER_PREFIX / f"{report['run_id']}.jsonl").stat().st_size
    )
    parts = [json.loads(line) for line in (output / report["parts"]).read_text().splitlines()]
    assert sum(p["rows"] for p in parts) == sum(e["rows"] for e in report["datasets"].values())
    assert all((output / p["key"]).is_file() for p in parts)
    assert {p["key"].rsplit("-", 1)[-1] for p in parts} == {"00000.ndjson", "00001.ndjson"}  # two workers
    assert not (output / layout.REPORTS_PREFIX / ".spool").exists()


def test_files_skipped_are_counted_per_file_and_reason(registry, tmp_path):
    # Three uploads of one assessment, each with an info.json that has no schema.
    folder = tmp_path / "in"
    folder.mkdir()
    for suffix in ("a", "b", "c"):
        for name in ("rec-0001-number-match.zip", "rec-0001-number-match.zip.metadata.json"):
            target = name.replace("rec-0001", f"rec-0001{suffix}")
            shutil.copy(SAMPLES / "archives" / name, folder / target)
        meta = folder / f"rec-0001{suffix}-number-match.zip.metadata.json"
        meta.write_text(json.dumps(json.loads(meta.read_text()) | {"recordid": f"rec-0001{suffix}"}))
    report = ingest_folder(folder, tmp_path / "out", registry, workers=2)
    assert report["archives"]["processed"] == 3
    (entry,) = report["files_skipped"]
    assert (entry["file"], entry["archives"]) == ("info.json", 3)
    assert entry["reason"].startswith("no schema for 'info.json'")


def test_report_lists_are_capped_and_the_rest_counted(registry, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ingest_outcomes, "REPORT_LIST_LIMIT", 1)
    report = ingest_folder(SAMPLES / "archives", tmp_path, registry, workers=1)
    assert report["archives"]["invalid"] == 3
    # The first invalid archive in source order is listed; the other two are counted ...
    assert [e["source"].rsplit("/", 1)[-1] for e in report["invalid"]] == ["rec-0005-invalid-response-time.zip"]
    assert report["invalid"][0]["errors"]["taskData.json"]
    assert report["not_listed"] == {"invalid": 2, "skipped": 0}
    # ... and are in the records file and the invalid sink.
    records = list(read_run_records(LocalStorage(tmp_path), report["run_id"]))
    assert sum(1 for r in records if r["status"] == "invalid") == 3
    assert len(list((tmp_path / "invalid").glob("*.json"))) == 3
    cli.print_ingest_summary(report, tmp_path)
    printed = capsys.readouterr().out
    assert f"2 more invalid: every archive is in {tmp_path / report['records']}" in printed


def _staged_writer(tmp_path, name: str, store: LocalStorage, published: list, max_staged: int = 1024) -> PartWriter:
    staging = tmp_path / f"staging-{name}"
    staging.mkdir()
    return PartWriter(0, store, on_published=published.append, staging_dir=str(staging), max_staged=max_staged)


def test_part_names_depend_on_which_archives_not_their_order(tmp_path):
    identities = [f"{n:064x}" for n in (3, 1, 2)]
    names = []
    for number, order in enumerate((identities, list(reversed(identities)), identities[:2])):
        published: list = []
        writer = _staged_writer(tmp_path, str(number), LocalStorage(tmp_path / f"out-{number}"), published)
        for identity in order:
            writer.checkpoint()
            writer.write("D", (("day", 1),), b"{}\n")
            writer.commit(identity)
        assert writer.publish() == 1
        writer.close()
        (part,) = published
        names.append(part.key.rsplit("/", 1)[-1])
        assert part.rows == len(order)
    assert names[0] == names[1]  # the same archives, in another order
    assert names[2] != names[0]  # other archives


def test_staged_part_files_are_bounded_and_every_row_is_published_once(tmp_path):
    store = LocalStorage(tmp_path / "out")
    published: list = []
    writer = _staged_writer(tmp_path, "bounded", store, published, max_staged=2)
    most_staged = 0
    # Archives in date order, as a backfill lists them: one row a day, days 1-5,
    # then day 1 again (its part was published: a second part file).
    for number, day in enumerate([1, 1, 2, 3, 3, 4, 5, 1]):
        writer.checkpoint()
        writer.write("D", (("day", day),), json.dumps({"n": number}).encode() + b"\n")
        writer.commit(f"{number + 1:064x}")
        most_staged = max(most_staged, writer.staged)
    assert most_staged == 2
    # An archive writing to more partitions than the bound keeps all of them
    # until it is decided, and rolls back cleanly.
    token = writer.checkpoint()
    for day in (6, 7, 8):
        writer.write("D", (("day", day),), b'{"n": "rolled back"}\n')
    assert writer.staged == 3
    writer.rollback(token)
    assert writer.publish() == len(published)
    writer.close()
    rows = sorted(
        json.loads(line)["n"] for part in published for line in (tmp_path / "out" / part.key).read_text().splitlines()
    )
    assert rows == list(range(8))
    days = sorted(dict(part.partition)["day"] for part in published)
    assert days == [1, 1, 2, 3, 4, 5]
    day_one = [part.key for part in published if dict(part.partition)["day"] == 1]
    assert len(set(day_one)) == 2
    assert sum(part.rows for part in published) == 8
    assert not list((tmp_path / "staging-bounded").iterdir())  # published files leave the staging folder


def test_rows_waiting_in_memory_are_bounded_and_roll_back_from_memory_or_file(tmp_path, monkeypatch):
    from bridge_downstream.ingest import part_writer as writer_module

    monkeypatch.setattr(writer_module, "BUFFERED_BYTES", 64)
    store = LocalStorage(tmp_path / "out")
    published: list = []
    writer = _staged_writer(tmp_path, "waiting", store, published)
    line = b'{"n": "kept"}\n'  # 14 bytes
    writer.checkpoint()
    writer.write_many("D", (("day", 1),), [line, line])
    writer.write("D", (("day", 2),), line)
    writer.commit(f"{1:064x}")
    assert not list((tmp_path / "staging-waiting").iterdir())  # 42 bytes: all still in memory
    # An invalid archive whose rows stayed in memory...
    token = writer.checkpoint()
    writer.write("D", (("day", 1),), b'{"n": "gone"}\n')
    writer.rollback(token)
    # ...and one whose rows reached the files when too many were waiting.
    token = writer.checkpoint()
    writer.write_many("D", (("day", 1),), [b'{"n": "gone too"}\n'] * 3)
    writer.write("D", (("day", 3),), b'{"n": "gone too"}\n')
    assert sorted(p.stat().st_size for p in (tmp_path / "staging-waiting").iterdir()) == [
        14,
        28 + 3 * 18,
    ]  # day 3 still waits
    writer.rollback(token)
    writer.checkpoint()
    writer.write("D", (("day", 1),), line)
    writer.commit(f"{2:064x}")
    assert writer.publish() == 2  # day 3 held only rolled-back rows
    writer.close()
    contents = {dict(part.partition)["day"]: (tmp_path / "out" / part.key).read_bytes() for part in published}
    assert contents == {1: line * 3, 2: line}
    assert [part.rows for part in published] == [3, 1] and [part.size for part in published] == [42, 14]
    assert writer._waiting_bytes == 0


def test_a_run_with_few_staged_parts_writes_the_same_rows(registry, sample_run, tmp_path, monkeypatch):
    from bridge_downstream.ingest import part_writer as writer_module

    _, unbounded = sample_run
    monkeypatch.setattr(writer_module, "MAX_STAGED_PARTS", 1)
    report = ingest_folder(SAMPLES / "archives", tmp_path, registry, workers=1)
    assert report["archives"] == unbounded["archives"]
    assert {d: c["rows"] for d, c in report["datasets"].items()} == {
        d: c["rows"] for d, c in unbounded["datasets"].items()
    }
    parts = [json.loads(line) for line in (tmp_path / report["parts"]).read_text().splitlines()]
    assert sum(p["rows"] for p in parts) == sum(c["rows"] for c in report["datasets"].values())
    on_disk = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "json").rglob("*.ndjson"))
    assert on_disk == sorted(p["key"] for p in parts)  # every part file once, under its own name
    assert sum(c["files"] for c in report["datasets"].values()) == len(parts)


def test_a_writer_handed_over_between_archives_goes_on_with_the_same_part_files(tmp_path):
    def write_days(writer, archives):
        for number, day in archives:
            writer.checkpoint()
            writer.write("D", (("day", day),), json.dumps({"n": number}).encode() + b"\n")
            writer.commit(f"{number + 1:064x}")

    archives = [(0, 1), (1, 2), (2, 1), (3, 3), (4, 2)]
    one: list = []
    writer = _staged_writer(tmp_path, "one", LocalStorage(tmp_path / "one"), one)
    write_days(writer, archives)
    writer.publish()
    writer.close()

    relayed: list = []
    first = _staged_writer(tmp_path, "relayed", LocalStorage(tmp_path / "relayed"), relayed)
    write_days(first, archives[:2])
    token = first.checkpoint()
    first.write("D", (("day", 9),), b"{}\n")
    with pytest.raises(ValueError, match="between archives"):
        first.hand_over()
    first.rollback(token)
    state = first.hand_over()
    first.close()  # the staged files are the successor's: they stay
    assert [part.rows for _, part in state.staged] == [1, 1, 0]  # day 9 rolled back: staged empty, never published
    second = PartWriter.taking_over(0, LocalStorage(tmp_path / "relayed"), state, on_published=relayed.append)
    write_days(second, archives[2:])
    assert second.publish() == 3
    second.close()
    assert [(p.key, p.rows) for p in relayed] == [(p.key, p.rows) for p in one]
    for part in one:
        assert (tmp_path / "relayed" / part.key).read_bytes() == (tmp_path / "one" / part.key).read_bytes()


def test_a_task_run_by_several_processes_in_turn_writes_what_one_process_writes(
    registry, sample_run, tmp_path, monkeypatch
):
    from bridge_downstream.ingest import run as ingest

    one_output, one_process = sample_run
    processes = tmp_path / "processes"
    segment = ingest.process_batch

    def recording_process(*args, **kwargs):
        with open(processes, "a") as stream:
            stream.write(f"{os.getpid()}\n")
        return segment(*args, **kwargs)

    monkeypatch.setattr(ingest, "process_batch", recording_process)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    folder = SAMPLES / "archives"
    archives = sorted(p.relative_to(folder).as_posix() for p in folder.glob("*.zip"))
    output = LocalStorage(tmp_path / "out")
    report = run_ingest(
        [ArchiveInput(LocalStorage(folder), key) for key in archives],
        registry=registry,
        profile=load_profile("mtb"),
        output=output,
        sink=StorageInvalidSink(output),
        workers=2,
        archives_per_process=1,
    )
    serial_output = LocalStorage(tmp_path / "serial")
    serial = run_ingest(
        [ArchiveInput(LocalStorage(folder), key) for key in archives],
        registry=registry,
        profile=load_profile("mtb"),
        output=serial_output,
        sink=StorageInvalidSink(serial_output),
        workers=1,
        archives_per_process=3,
    )

    # A new process for every archive with two workers; every 3 archives with one.
    assert len(set(processes.read_text().split())) == len(archives) + -(-len(archives) // 3)
    assert os.getpid() not in {int(pid) for pid in processes.read_text().split()}
    assert serial["archives"] == one_process["archives"]
    assert {d: c["rows"] for d, c in serial["datasets"].items()} == {
        d: c["rows"] for d, c in one_process["datasets"].items()
    }
    assert report["archives"] == one_process["archives"] and report["datasets"] == one_process["datasets"]

    def part_files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in (root / "json").rglob("*.ndjson")}

    assert part_files(tmp_path / "out") == part_files(one_output)  # one part file per partition and task, as before

    def account(root, run_id):
        return [(r["source"], r["status"], r["datasets"]) for r in read_run_records(LocalStorage(root), run_id)]

    assert account(tmp_path / "out", report["run_id"]) == account(one_output, one_process["run_id"])
    assert not list(scratch.iterdir())  # the tasks' local files went with the run


def test_the_ledger_holds_16_bytes_an_archive_and_finds_each_one(tmp_path):
    import hashlib
    import pickle

    from bridge_downstream.ingest.outcomes import IngestLedger, load_ledger

    identities = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(5000)]
    ledger = IngestLedger(identities + identities[:100])  # an archive can be in two runs' files
    assert len(ledger) == 5100
    assert all(identity in ledger for identity in identities)
    others = [hashlib.sha256(f"other-{n}".encode()).hexdigest() for n in range(5000)]
    assert not any(identity in ledger for identity in others)
    assert "0" * 64 not in ledger and "f" * 64 not in ledger and "0" * 64 not in IngestLedger()
    assert len(pickle.dumps(ledger)) < 16 * 5100 + 256 * 64  # one value to a Spark task, not 5,000 strings
    # Bytes that straddle two neighbouring digests are not a match.
    first, second = b"\x07" + b"a" * 7 + b"\x07" + b"b" * 7, b"\x07" + b"c" * 15
    neighbours = IngestLedger.of_digests([first + second])
    assert first.hex() + "00" * 16 in neighbours and second.hex() + "00" * 16 in neighbours
    assert (first + second)[8:24].hex() + "00" * 16 not in neighbours

    # A run written before the digests existed is read from its lines; one with
    # digests from them alone while its lines are the size they indexed.
    from bridge_downstream.ingest.outcomes import _digests_header

    def lines(chunk):
        return b"".join(json.dumps({"identity": i}).encode() + b"\n" for i in chunk)

    store = LocalStorage(tmp_path)
    store.write_bytes(f"{layout.LEDGER_PREFIX}/run-0.jsonl", lines(identities[:3000]))
    store.write_bytes(f"{layout.LEDGER_PREFIX}/run-1.jsonl", lines(identities[2000:]))
    digests = b"".join(IngestLedger.digest(i) for i in identities[2000:])
    store.write_bytes(f"{layout.LEDGER_PREFIX}/run-1.digests", _digests_header(len(lines(identities[2000:]))) + digests)
    loaded = load_ledger(store)
    assert (
        len(loaded) == 5000 + 1000 and identities[0] in loaded and identities[-1] in loaded and others[0] not in loaded
    )
    # An operator removes an archive from run 1's lines to have it ingested again:
    # the digests no longer match the lines, so the lines decide.
    store.write_bytes(f"{layout.LEDGER_PREFIX}/run-1.jsonl", lines(identities[2000:-1]))
    assert identities[-1] not in load_ledger(store) and identities[-2] in load_ledger(store)
    store.delete(f"{layout.LEDGER_PREFIX}/run-1.jsonl")  # and digests without lines count for nothing
    assert len(load_ledger(store)) == 3000
    store.write_bytes(f"{layout.LEDGER_PREFIX}/run-2.jsonl", lines(others[:1]))
    store.write_bytes(f"{layout.LEDGER_PREFIX}/run-2.digests", _digests_header(len(lines(others[:1]))) + b"short")
    with pytest.raises(ValueError, match="16 bytes each"):
        load_ledger(store)


def test_a_spooled_listing_ingests_like_a_list(registry, sample_run, tmp_path):
    _, listed_report = sample_run
    folder = SAMPLES / "archives"
    keys = sorted(p.name for p in folder.glob("*.zip"))
    listing = ArchiveListing.of_storage(LocalStorage(folder), (".zip",))
    assert [inp.key for inp in listing] == keys
    assert listing.total_bytes == sum((folder / key).stat().st_size for key in keys)
    assert [inp.key for inp in listing[1::2]] == keys[1::2]
    assert [inp.key for inp in listing[1::2][1:]] == keys[1::2][1:]  # a view of a view
    assert listing[-1].key == keys[-1] and listing[1::2][0].key == keys[1] and len(listing[2:4]) == 2
    output = LocalStorage(tmp_path)
    report = run_ingest(
        listing,
        registry=registry,
        profile=load_profile("mtb"),
        output=output,
        sink=StorageInvalidSink(output),
        workers=2,
    )
    assert report["archives"] == listed_report["archives"]
    assert report["datasets"] == listed_report["datasets"]
    with pytest.raises(ValueError, match="newline"):
        ArchiveListing(LocalStorage(folder), ["a\nb.zip"])
    with pytest.raises(ValueError, match="key order"):
        ArchiveListing(LocalStorage(folder), ["b.zip", "a.zip"])


def test_listing_views_start_reading_at_the_nearest_mark(tmp_path, monkeypatch):
    # A task's later segments are views far into the listing: each reads from
    # the offset noted for the nearest earlier mark, not from the first key.
    monkeypatch.setattr(ArchiveListing, "MARK_EVERY", 3)
    keys = [f"{i:03d}-{'x' * (i % 5)}.zip" for i in range(20)]  # keys of different lengths
    listing = ArchiveListing(LocalStorage(tmp_path), keys)
    for view, expected in [
        (listing, keys),
        (listing[1::2], keys[1::2]),
        (listing[1::2][4:7], keys[1::2][4:7]),
        (listing[9:], keys[9:]),
        (listing[17:18], keys[17:18]),
        (listing[0::7], keys[0::7]),
        (listing[19:], keys[19:]),
    ]:
        assert [inp.key for inp in view] == expected
    read_from = []
    real_read_lines = ArchiveListing.__iter__.__globals__["read_lines"]
    monkeypatch.setitem(
        ArchiveListing.__iter__.__globals__,
        "read_lines",
        lambda fd, start=0: read_from.append(start) or real_read_lines(fd, start=start),
    )
    assert [inp.key for inp in listing[10:12]] == keys[10:12]
    assert read_from == [sum(len(key) + 1 for key in keys[:9])]  # keys 9, 10, 11: the mark of key 9


def test_local_listing_is_in_key_order_folder_by_folder(tmp_path):
    # "a.zip" < "a/x.zip" < "a0.zip" as keys ("." < "/" < "0"), though "a" < "a.zip" as names.
    names = ["a0.zip", "a/x.zip", "a.zip", "a-b/y.zip", "a/b/z.zip", "b.zip", "a/.tmp-upload", "A.zip"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    listed = [(info.key, info.size) for info in LocalStorage(tmp_path).list("")]
    expected = sorted(n for n in names if ".tmp-" not in n)
    assert [key for key, _ in listed] == expected
    assert all(size == len(key) for key, size in listed)
    assert [info.key for info in LocalStorage(tmp_path).list("a/")] == ["a/b/z.zip", "a/x.zip"]
