"""backfill of a Synapse file view: synapseclient's own paging (``nextPageToken``)
reads every page of the view's query, whatever the type of ``exportedOn``."""

from __future__ import annotations

import pytest

from bridge_downstream_adapters.backfill_sources import export_millis, list_file_view
from bridge_downstream_adapters.secrets import SecretToken
from bridge_downstream_adapters.synapse import connect
from fake_synapse import FakeSynapse

PAGE = 2


@pytest.fixture()
def server():
    server = FakeSynapse(page_size=PAGE).start()
    yield server
    server.stop()
    assert not server.unknown, f"the client called routes the fake lacks: {server.unknown}"


def _raw_view(server: FakeSynapse, records: int, column_types: dict[str, str] | None = None) -> tuple[str, str]:
    """A view of two exports of each of ``records`` records (the later one at +1 s); (view id, folder id)."""
    owner = server.add_user("token-p", "bridge-downstream")
    folder = server.add_folder("raw", server.add_project("Bridge raw data", owner), owner)
    rows = []
    for number in range(records):
        for export, exported_on in (("old", 1_700_000_000_000), ("new", 1_700_000_001_000)):
            entity = server.add_raw_file("raw-bucket", f"app/r{number}-{export}.zip", folder, owner)
            rows.append({"id": entity, "recordId": f"r{number}", "exportedOn": str(exported_on + number)})
    return server.add_file_view(rows, column_types), folder


def test_a_view_of_more_rows_than_one_page_is_read_to_its_last_page(server):
    view, folder = _raw_view(server, records=7)  # 14 rows: 7 pages of 2
    syn = connect(SecretToken("token-p", "test"), endpoint=server.url)

    every_export = list_file_view(syn, view, folder, drop_duplicates=False)
    latest = list_file_view(syn, view, folder)

    assert len(every_export) == 14
    assert len({archive.key for archive in every_export}) == 14
    assert sorted(archive.key for archive in latest) == sorted(f"app/r{n}-new.zip" for n in range(7))
    assert {archive.exported_on for archive in latest} == {str(1_700_000_001_000 + n) for n in range(7)}
    # The first page came with the query, the six others by their nextPageToken.
    assert len(server.calls("POST", r"/table/query/async/start$")) == 2
    assert len(server.calls("POST", r"/table/query/nextPage/async/start$")) == 2 * 6


def test_a_filtered_query_pages_too(server):
    view, folder = _raw_view(server, records=5)
    syn = connect(SecretToken("token-p", "test"), endpoint=server.url)

    found = list_file_view(syn, view, folder, query="SELECT * FROM {source_table} WHERE recordId <> 'r0'")

    assert sorted(archive.recordid for archive in found) == ["r1", "r2", "r3", "r4"]
    assert len(server.calls("POST", r"/table/query/nextPage/async/start$")) == 3  # 8 rows: 4 pages


def test_an_exported_on_column_of_type_date_keeps_the_latest_export(server):
    view, folder = _raw_view(server, records=3, column_types={"exportedOn": "DATE"})
    syn = connect(SecretToken("token-p", "test"), endpoint=server.url)

    latest = list_file_view(syn, view, folder)

    assert sorted(archive.key for archive in latest) == [f"app/r{n}-new.zip" for n in range(3)]
    assert sorted(archive.exported_on for archive in latest) == [str(1_700_000_001_000 + n) for n in range(3)]


def test_export_millis_reads_every_type_the_client_gives():
    from datetime import UTC, datetime

    assert export_millis("1700000000123") == 1_700_000_000_123
    assert export_millis(1_700_000_000_123) == 1_700_000_000_123
    assert export_millis(datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)) == 1_700_000_000_123
    assert export_millis(None) is None and export_millis("") is None
