"""Forgetting ledger entries: their archives are ingested again, the others stay skipped."""

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.ingest import forget_ingested, load_ledger
from support import SAMPLES, ingest_folder


def _identities(output) -> dict[str, str]:
    """record id -> identity, from the ledger's lines."""
    import json

    lines = [
        json.loads(line)
        for path in sorted((output / layout.LEDGER_PREFIX).glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    return {entry["source"].rsplit("/", 1)[-1]: entry["identity"] for entry in lines}


def test_a_forgotten_archive_is_ingested_again_and_the_others_stay_skipped(registry, tmp_path):
    output = tmp_path / "out"
    first = ingest_folder(SAMPLES / "archives", output, registry)
    assert first["archives"]["processed"] == 5
    identities = _identities(output)
    storage = LocalStorage(output)

    forgotten = forget_ingested(storage, lambda entry: entry["recordid"] == "rec-0003")

    assert [entry["recordid"] for entry in forgotten] == ["rec-0003"]
    ledger = load_ledger(storage)
    assert identities["rec-0003-flanker-android.zip"] not in ledger
    assert identities["rec-0004-legacy-survey.zip"] in ledger
    assert len(ledger) == 4
    # the digests indexed the old lines: gone, not stale
    assert not list((output / layout.LEDGER_PREFIX).glob("*.digests"))

    second = ingest_folder(SAMPLES / "archives", output, registry)
    assert second["archives"]["processed"] == 1
    assert second["archives"]["skipped"] == 4
    assert identities["rec-0003-flanker-android.zip"] in load_ledger(storage)


def test_forgetting_nothing_changes_nothing(registry, tmp_path):
    output = tmp_path / "out"
    ingest_folder(SAMPLES / "archives", output, registry)
    before = {path.name: path.read_bytes() for path in (output / layout.LEDGER_PREFIX).iterdir()}

    assert forget_ingested(LocalStorage(output), lambda entry: False) == []

    after = {path.name: path.read_bytes() for path in (output / layout.LEDGER_PREFIX).iterdir()}
    assert after == before
