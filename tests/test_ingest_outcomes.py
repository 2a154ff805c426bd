"""A run's account of every archive: spooled per task, merged into the records
file, the ledger, the invalid sink and a report whose size does not grow with
the number of archives."""

import json
import shutil

import pytest

from bridge_downstream import cli, ingest_outcomes, layout
from bridge_downstream.ingest import ArchiveListing, run_ingest
from bridge_downstream.ingest_outcomes import read_run_records
from bridge_downstream.profiles import load_profile
from bridge_downstream.sinks import StorageInvalidSink
from bridge_downstream.storage import LocalStorage
from bridge_downstream.writer import PartWriter

from support import SAMPLES, build_sample_registry, ingest_folder


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return build_sample_registry(tmp_path_factory.mktemp("registry") / "reg")


@pytest.fixture(scope="module")
def sample_run(registry, tmp_path_factory):
    output = tmp_path_factory.mktemp("outcomes")
    return output, ingest_folder(SAMPLES / "archives", output, registry, workers=2)


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
    output, report = sample_run
    ledger = (output / layout.LEDGER_PREFIX / f"{report['run_id']}.jsonl").read_text().splitlines()
    assert len(ledger) == 5
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
        meta.write_text(json.dumps(json.loads(meta.read_text()) | {"recordId": f"rec-0001{suffix}"}))
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


def test_part_names_depend_on_which_archives_not_their_order(tmp_path):
    identities = [f"{n:064x}" for n in (3, 1, 2)]
    tags = []
    for order in (identities, list(reversed(identities))):
        writer = PartWriter(0, staging_dir=str(tmp_path / f"staging-{len(tags)}"))
        (tmp_path / f"staging-{len(tags)}").mkdir()
        writer.write("D", (("day", 1),), b"{}\n")
        for identity in order:
            writer.commit(identity)
        store = tmp_path / f"out-{len(tags)}"
        (part,) = writer.publish(LocalStorage(store))
        tags.append(part.key.rsplit("/", 1)[-1])
        writer.close()
    assert tags[0] == tags[1]
    other = PartWriter(0, staging_dir=str(tmp_path / "staging-other"))
    (tmp_path / "staging-other").mkdir()
    other.write("D", (("day", 1),), b"{}\n")
    for identity in identities[:2]:
        other.commit(identity)
    (part,) = other.publish(LocalStorage(tmp_path / "out-other"))
    assert part.key.rsplit("/", 1)[-1] != tags[0]


def test_a_compact_listing_ingests_like_a_list(registry, sample_run, tmp_path):
    _, listed_report = sample_run
    folder = SAMPLES / "archives"
    keys = [p.name for p in folder.glob("*.zip")]
    listing = ArchiveListing(LocalStorage(folder), reversed(sorted(keys)))
    assert [inp.key for inp in listing] == sorted(keys)
    assert [inp.key for inp in listing[1::2]] == sorted(keys)[1::2]
    assert listing[-1].key == sorted(keys)[-1] and len(listing[2:4]) == 2
    output = LocalStorage(tmp_path)
    report = run_ingest(listing, registry=registry, profile=load_profile("mtb"), output=output, sink=StorageInvalidSink(output), workers=2)
    assert report["archives"] == listed_report["archives"]
    assert report["datasets"] == listed_report["datasets"]
    with pytest.raises(ValueError, match="newline"):
        ArchiveListing(LocalStorage(folder), ["a\nb.zip"])
