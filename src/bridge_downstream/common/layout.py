"""Where everything lives under a pipeline root.

A *pipeline root* is ``s3://<bucket>/<namespace>/<app>/<study>/`` in AWS and
the ``--output`` directory locally; the keys below it are the same in both.
This module is the one place that spells them.

    json/dataset=<DatasetId>/<partitions>/part-<tag>-<task>.ndjson   ingest output (tag: a digest of the archives in it)
    invalid/<digest of record id and identity>.json                  invalid sink (local)
    ledger/ingested/<run id>.jsonl                                   ingest bookmarks (archive identities)
    reports/<run id>.json                                            run reports
    reports/<run id>.records.jsonl, .parts.jsonl                     every archive / part file of a run
    reports/.spool/<run id>/...                                      per-task outcomes while a run lasts
    published/<DatasetId>/versions/<version>/parquet/<table>/<partitions>/...   one publish
    published/<DatasetId>/versions/<version>/csv/<table>/<partitions>/...
    published/<DatasetId>/versions/<version>/manifest.json            written last
    published/<DatasetId>/CURRENT                                     the current version
    published/<DatasetId>/versions.json                               the complete versions, for pruning (publish.versions)
    published/<DatasetId>/PUBLISHED_INPUTS                            digest of the NDJSON it was published from (Glue)
    claims/<key>@<run id>, commits/<run id>.json                   which runs' files readers take (run_commits)
    claimants/<run id>, claimed/<run id>/<key>@                    each run that claims, and its claims (run_commits)
    catalog.duckdb                                                   local SQL views (local only)
    pipeline.json                                                    the root's profile and registry, recorded at first use

Each dataset publishes on its own (Glue runs one JSON-to-Parquet job per
dataset, in parallel), so versions and the CURRENT pointer are per dataset.

Partition folders are Hive style and zero-padded
(``assessmentid=spelling/year=2022/month=02/day=15``) so that a lexical
listing is a chronological one.

Metadata is data, never a path. Every value that becomes part of a key (a
dataset id, a partition value such as an ``assessmentid`` or ``cohort`` from
an upload's metadata) is escaped here, and only here, the way Hive and Spark
escape partition values (``ExternalCatalogUtils.escapePathName``:
``assessmentid=a%2Fb`` for ``a/b``), so a value never adds a folder, never
climbs out with ``..`` and reads back as itself (:func:`parse_partition_path`,
DuckDB, Athena). The ingest folders, both publish engines, the catalogs and
the Synapse export all go through these functions. A key that a file system
or S3 still cannot hold (a NUL, an over-long name) raises
:class:`UnusableKey`; ingest turns that into its archive's ``invalid`` outcome.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Literal
from urllib.parse import unquote

from bridge_downstream.common.storage import join_key

JSON_PREFIX = "json"
INVALID_PREFIX = "invalid"
LEDGER_PREFIX = "ledger/ingested"
REPORTS_PREFIX = "reports"
QUALITY_REPORTS_PREFIX = f"{REPORTS_PREFIX}/quality"  # on-demand and after-publish quality runs
PUBLISHED_PREFIX = "published"
MANIFEST_NAME = "manifest.json"
LOCAL_CATALOG_NAME = "catalog.duckdb"
ROOT_RECORD_NAME = "pipeline.json"

# The month a row's own date or time falls in, as yyyymm (recover's time-partitioned data
# types; 0 where the value spells no instant): docs/publish.md, "The table contract".
TIME_PARTITION_COLUMN = "date_month"
PARTITION_WIDTHS = {"year": 4, "month": 2, "day": 2, TIME_PARTITION_COLUMN: 6}

PartitionType = Literal["int", "string"]


def partition_type(name: str) -> PartitionType:
    """The type every reader gives partition column ``name``: the date parts
    (and recover's ``date_month``) are integers (their folder names are zero-padded, ``month=03``, and read as 3 by
    Spark, pyarrow, pandas, the DuckDB views and Athena through Glue); every
    other partition (``assessmentid``, ``cohort``) is text, even when a value
    looks like a number. The catalogs take their partition types from here."""
    return "int" if name in PARTITION_WIDTHS else "string"


HIVE_DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # a null or empty partition value, as Hive and Spark name it

# The characters Spark escapes in a partition folder name (ExternalCatalogUtils.escapePathName,
# on Linux): control characters but NUL, DEL, and "#%'*/:=?\{[]^ -- each as %XX.
_ESCAPES = {code: f"%{code:02X}" for code in [*range(0x01, 0x20), *map(ord, "\"#%'*/:=?\\{[]^"), 0x7F]}

MAX_NAME_BYTES = 255  # a file or folder name (ext4, XFS, APFS; S3 has no such limit, local runs do)
MAX_KEY_BYTES = 1024  # an S3 object key


class UnusableKey(ValueError):
    """A key built from data that no storage can hold, or that would leave its folder."""


def escape_path_name(text: str) -> str:
    """``text`` as Hive and Spark write it in a folder name: ``a/b=c%`` -> ``a%2Fb%3Dc%25``."""
    return text.translate(_ESCAPES)


def unescape_path_name(text: str) -> str:
    """The inverse of :func:`escape_path_name` (Spark's ``unescapePathName``)."""
    return unquote(text)


def key_segment(text: str) -> str:
    """A value that is a whole folder or file name on its own (a dataset id in
    ``published/<DatasetId>``): escaped, and a leading ``.`` too, so it is never
    ``.``, ``..`` or a hidden name. (In a ``name=value`` folder the name leads.)"""
    escaped = escape_path_name(text)
    return "%2E" + escaped[1:] if escaped.startswith(".") else escaped


def partition_value_text(name: str, value: object) -> str:
    width = PARTITION_WIDTHS.get(name)
    if width is not None and isinstance(value, int):
        return str(value).zfill(width)
    return "" if value is None else str(value)


def partition_segment(name: str, value: object) -> str:
    """One Hive partition folder, exactly as Spark names it: ``cohort=a%2Fb``;
    a null or empty value is ``__HIVE_DEFAULT_PARTITION__``."""
    text = partition_value_text(name, value)
    return f"{escape_path_name(name)}={escape_path_name(text) if text else HIVE_DEFAULT_PARTITION}"


def partition_path(partition: Mapping[str, object]) -> str:
    return "/".join(partition_segment(name, value) for name, value in partition.items())


def parse_partition_path(path: str) -> dict[str, str]:
    """The partition values of a relative folder path, unescaped: what was written."""
    values = {}
    for segment in path.strip("/").split("/"):
        name, is_partition, value = segment.partition("=")
        if is_partition:
            values[unescape_path_name(name)] = unescape_path_name(value)
    return values


def checked_key(*parts: str) -> str:
    """``parts`` joined as a key that every storage can hold and that stays in
    its folder; :class:`UnusableKey` says why not. The one check of keys built
    from data (escaping already keeps ``/`` and a leading ``.`` out of values)."""
    key = join_key(*parts)
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise UnusableKey(f"the key {_shown(key)} would leave its folder")
        if "\0" in segment:
            raise UnusableKey(f"the name {_shown(segment)} holds a NUL character, which no file system can name")
        try:
            size = len(segment.encode())
        except UnicodeEncodeError:
            raise UnusableKey(f"the name {_shown(segment)} is not text (an unpaired surrogate)") from None
        if size > MAX_NAME_BYTES:
            raise UnusableKey(
                f"the name {_shown(segment)} is {size} bytes long; a file system names at most {MAX_NAME_BYTES}"
            )
    if len(key.encode()) > MAX_KEY_BYTES:
        raise UnusableKey(f"the key {_shown(key)} is longer than an S3 key ({MAX_KEY_BYTES} bytes)")
    return key


def _shown(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def dataset_prefix(dataset_id: str) -> str:
    return join_key(JSON_PREFIX, f"dataset={escape_path_name(dataset_id)}")


def json_partition_prefix(dataset_id: str, partition: Mapping[str, object]) -> str:
    """The folder of a dataset's partition under ``json/``; :class:`UnusableKey` if there is none."""
    return checked_key(dataset_prefix(dataset_id), partition_path(partition))


def json_part_key(dataset_id: str, partition: Mapping[str, object], tag: str, task: int) -> str:
    """``tag``: a digest of the archives the part file holds, so the same archives give the same name."""
    # Never starts with "_" or ".": Spark and Athena skip such files.
    return checked_key(json_partition_prefix(dataset_id, partition), f"part-{tag}-{task:05d}.ndjson")


def invalid_key(record_id: str, identity: str) -> str:
    """A digest, not the record id (metadata, never a path); the entry holds the record id."""
    digest = hashlib.sha256(f"{record_id}\0{identity}".encode("utf-8", "surrogatepass")).hexdigest()
    return join_key(INVALID_PREFIX, f"{digest[:32]}.json")


def ledger_key(identity: str) -> str:
    return join_key(LEDGER_PREFIX, f"{identity}.json")


def report_key(run_id: str) -> str:
    return join_key(REPORTS_PREFIX, f"{run_id}.json")


def published_dataset_prefix(dataset_id: str) -> str:
    return checked_key(PUBLISHED_PREFIX, key_segment(dataset_id))


def current_pointer_key(dataset_id: str) -> str:
    return join_key(published_dataset_prefix(dataset_id), "CURRENT")


def version_prefix(dataset_id: str, version: str) -> str:
    return join_key(published_dataset_prefix(dataset_id), "versions", version)


def table_prefix(dataset_id: str, version: str, fmt: str, table: str) -> str:
    return checked_key(version_prefix(dataset_id, version), fmt, key_segment(table))


def manifest_key(dataset_id: str, version: str) -> str:
    return join_key(version_prefix(dataset_id, version), MANIFEST_NAME)


def published_inputs_key(dataset_id: str) -> str:
    """A digest of the committed NDJSON the dataset's last publish on Glue read
    (the debounced publish compares it with what is committed now)."""
    return join_key(published_dataset_prefix(dataset_id), "PUBLISHED_INPUTS")
