"""Deduplication before relationalize: one version of each record per dataset.

Works on NDJSON lines (a Spark DataFrame with a ``value`` column) so the
relationalize step reads only surviving rows. The profile's ``dedup`` section
says what a record's key is, which fields order its versions and what makes
a version (:class:`~bridge_downstream.config.profiles.DedupRule`); per key,
exactly one version survives, the first in this order:

1. each ``order_by`` field as an instant (:func:`~bridge_downstream.common.instants.instant_micros_column`), in
   its direction, a missing value or one that is no instant last;
2. the part file, descending (by name);
3. the version's place in its part file, the last written first.

A version is one row (export rows, recover), or (with ``version_sequence``:
Bridge records, one archive's rows) the rows of one part file that follow
each other with the same instants and the sequence fields strictly
increasing, as ingest writes an archive's documents and their elements. Rows
whose key is listed in the matching ``_Deleted`` dataset are removed.
:mod:`.arrow_engine` decides the same on Arrow.
"""

from __future__ import annotations

from functools import reduce

from bridge_downstream.common.instants import instant_micros_column
from bridge_downstream.config.profiles import Profile
from bridge_downstream.publish.engine_steps import EXPORT_END_DATE_FIELD
from bridge_downstream.publish.increments import KEY_SEPARATOR, NULL_KEY
from bridge_downstream.relationalize.plan import time_month_sql


def _with_fields(lines, names: list[str]):
    """``lines`` plus one string column ``_f<i>`` per top-level field of ``names``:
    ``json_tuple`` parses each line once for all of them (``get_json_object``
    would parse it once per field) and returns the same text."""
    from pyspark.sql import functions as F

    aliases = [f"_f{i}" for i in range(len(names))]
    return lines.select("*", F.json_tuple(F.col("value"), *names).alias(*aliases)), dict(zip(names, aliases))


def _earlier(values: list, previous: list):
    """``values`` before ``previous``, compared left to right (null where unknown)."""
    pairs = list(zip(values, previous))
    last_value, last_previous = pairs[-1]
    return reduce(
        lambda after, pair: (pair[0] < pair[1]) | ((pair[0] == pair[1]) & after),
        reversed(pairs[:-1]),
        last_value < last_previous,
    )


def dedup_lines(lines, dataset_id: str, profile: Profile, deleted_lines=None, partitions: int | None = None):
    """The surviving lines of ``lines`` (DataFrame[value: string], as ``spark.read.text`` reads them).

    ``partitions``: tasks the rows are shuffled into by key (default: the
    session's ``spark.sql.shuffle.partitions``); each task sorts its share."""
    from pyspark.sql import functions as F

    flagged = flag_lines(lines, dataset_id, profile, deleted_lines, partitions)
    return flagged.where(F.col(WRITTEN)).select("value")


# The columns :func:`flag_lines` adds: the row's export end date, whether it
# survives dedup, and whether it also survives the deleted records' removal;
# its record key as :mod:`.increments` writes it, its part file, and the
# month of its time field (a dataset partitioned by its rows' time; else null).
EXPORT_END_DATE = "_export_end_date"
DEDUPLICATED = "_deduplicated"
WRITTEN = "_written"
KEY = "_key"
PART_FILE = "_part_file"
TIME_MONTH = "_time_month"


def flag_lines(
    lines,
    dataset_id: str,
    profile: Profile,
    deleted_lines=None,
    partitions: int | None = None,
    excluded_keys: frozenset[str] = frozenset(),
    time_source: str | None = None,
):
    """Every non-blank line of ``lines`` with :data:`EXPORT_END_DATE`,
    :data:`DEDUPLICATED`, :data:`WRITTEN`, :data:`KEY`, :data:`PART_FILE` and
    :data:`TIME_MONTH`: what :func:`dedup_lines` keeps, and what the record counts count.
    ``excluded_keys``: keys none of whose rows survive (an incremental
    publish's keys whose surviving version lies in a partition it carries).
    ``time_source``: the field whose month (:func:`~bridge_downstream.relationalize.plan.time_month_sql`,
    as the executor computes it) partitions the rows."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    rule = profile.dedup
    key = rule.key_for(dataset_id)
    extra = [time_source] if time_source is not None else []
    if not key:
        dated, column = _with_fields(
            lines.where(F.trim(F.col("value")) != ""), list(dict.fromkeys([EXPORT_END_DATE_FIELD, *extra]))
        )
        return dated.select(
            "value",
            F.col(column[EXPORT_END_DATE_FIELD]).alias(EXPORT_END_DATE),
            F.lit(True).alias(DEDUPLICATED),
            F.lit(True).alias(WRITTEN),
            F.lit(None).cast("string").alias(KEY),
            F.input_file_name().alias(PART_FILE),
            _time_month(column, time_source),
        )
    # A row's place in its part file: the split of the file it was read in (a
    # large file is read in several), then its order in that split's task.
    positioned = lines.select(
        "value",
        F.input_file_name().alias(PART_FILE),
        F.col("_metadata.file_block_start").alias("_split_start"),
        F.monotonically_increasing_id().alias("_row_in_split"),
    ).where(F.trim(F.col("value")) != "")
    names = list(
        dict.fromkeys(
            [*key, *(name for name, _ in rule.order_by), *rule.version_sequence, EXPORT_END_DATE_FIELD, *extra]
        )
    )
    keyed, column = _with_fields(positioned, names)
    key_names = [column[name] for name in key]
    if partitions:
        keyed = keyed.repartition(partitions, *key_names)  # the window's shuffle, with this many tasks
    keyed = keyed.select(
        "*", *[instant_micros_column(column[name]).alias(f"_o{i}") for i, (name, _) in enumerate(rule.order_by)]
    )
    instants = [F.col(f"_o{i}") for i in range(len(rule.order_by))]
    ordering = [
        instant.desc_nulls_last() if descending else instant.asc_nulls_last()
        for instant, (_, descending) in zip(instants, rule.order_by)
    ]
    ordering += [F.col(PART_FILE).desc(), F.col("_split_start").desc(), F.col("_row_in_split").desc()]
    window = Window.partitionBy(*key_names).orderBy(*ordering)
    if not rule.version_sequence:  # every row is a version
        ranked = keyed.withColumn(DEDUPLICATED, F.row_number().over(window) == 1)
    else:
        types = profile.extra_columns(dataset_id)
        sequence = [F.col(column[name]).cast(types[name]) for name in rule.version_sequence]

        def previous(value):
            return F.lag(value).over(window)

        same_place = F.col(PART_FILE) == previous(F.col(PART_FILE))
        for instant in instants:
            same_place &= instant.eqNullSafe(previous(instant))
        # last written first: along one version the sequence decreases
        continues = same_place & _earlier(sequence, [previous(value) for value in sequence])
        starts = F.when(F.coalesce(continues, F.lit(False)), 0).otherwise(1)
        ordinal = F.sum(F.col("_starts")).over(window.rowsBetween(Window.unboundedPreceding, Window.currentRow))
        ranked = keyed.withColumn("_starts", starts).withColumn(DEDUPLICATED, ordinal == 1)
    any_null = reduce(lambda a, b: a | b, [F.col(name).isNull() for name in key_names])
    ranked = ranked.withColumn(
        KEY, F.when(any_null, F.lit(NULL_KEY)).otherwise(F.concat_ws(KEY_SEPARATOR, *[F.col(n) for n in key_names]))
    )
    if excluded_keys:
        ranked = ranked.withColumn(DEDUPLICATED, F.col(DEDUPLICATED) & ~F.col(KEY).isin(sorted(excluded_keys)))
    written = F.col(DEDUPLICATED)
    if deleted_lines is not None:
        deleted, deleted_column = _with_fields(deleted_lines, list(key))
        deleted_keys = deleted.select(
            *[F.col(deleted_column[name]).alias(key_names[i]) for i, name in enumerate(key)],
            F.lit(True).alias("_deleted"),
        ).distinct()
        # a null key part matches no deleted key, as in a join
        ranked = ranked.join(deleted_keys, on=key_names, how="left")
        written = written & F.col("_deleted").isNull()
    return ranked.select(
        "value",
        F.col(column[EXPORT_END_DATE_FIELD]).alias(EXPORT_END_DATE),
        DEDUPLICATED,
        written.alias(WRITTEN),
        KEY,
        PART_FILE,
        _time_month(column, time_source),
    )


def _time_month(column: dict[str, str], time_source: str | None):
    """:data:`TIME_MONTH` of the rows whose fields ``column`` names (:func:`_with_fields`)."""
    from pyspark.sql import functions as F

    if time_source is None:
        return F.lit(None).cast("bigint").alias(TIME_MONTH)
    return F.expr(time_month_sql(f"`{column[time_source]}`")).alias(TIME_MONTH)
