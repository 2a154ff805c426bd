"""Deduplication before relationalize: one version of each record per dataset.

Works on NDJSON lines (a Spark DataFrame with a ``value`` column) so the
relationalize step reads only surviving rows.

* Bridge (MTB) records: a record's rows (all elements of an array document)
  form one *version*; per record key the version with the latest
  ``exportedon``, then ``uploadedon``, wins -- all of its rows are kept. Ties
  are broken by the part file the rows came from (one archive's rows share a
  part file), so the choice is deterministic.
* Export rows (recover): every row is its own record; per data-type key the
  row with the latest ``InsertedDate``, then export end date, wins, and rows
  whose key is listed in the matching ``_Deleted`` data type are removed.

Keys and ordering are configuration (the profile's ``dedup`` section).
"""

from __future__ import annotations

from bridge_downstream.config.profiles import Profile


def _with_fields(lines, names: list[str]):
    """``lines`` plus one string column ``_f<i>`` per top-level field of ``names``:
    ``json_tuple`` parses each line once for all of them (``get_json_object``
    would parse it once per field) and returns the same text."""
    from pyspark.sql import functions as F

    aliases = [f"_f{i}" for i in range(len(names))]
    return lines.select("*", F.json_tuple(F.col("value"), *names).alias(*aliases)), dict(zip(names, aliases))


def dedup_lines(lines, dataset_id: str, profile: Profile, deleted_lines=None, partitions: int | None = None):
    """The surviving lines of ``lines`` (DataFrame[value: string]).

    ``partitions``: tasks the rows are shuffled into by key (default: the
    session's ``spark.sql.shuffle.partitions``); each task sorts its share."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = profile.dedup.key_for(dataset_id)
    if not key:
        return lines
    lines = lines.where(F.trim(F.col("value")) != "").withColumn("_source_file", F.input_file_name())
    export = profile.kind != "bridge-archive"
    names = list(
        dict.fromkeys([*key, *(name for name, _ in profile.dedup.order_by), *(["sourceindex"] if export else [])])
    )
    keyed, column = _with_fields(lines, names)
    key_names = [column[name] for name in key]
    if partitions:
        keyed = keyed.repartition(partitions, *key_names)  # the window's shuffle, with this many tasks
    ordering = []
    for name, descending in profile.dedup.order_by:
        ordering.append(F.col(column[name]).desc_nulls_last() if descending else F.col(column[name]).asc_nulls_last())
    if not export:
        window = Window.partitionBy(*key_names).orderBy(*ordering, F.col("_source_file").desc())
        survivors = keyed.withColumn("_rank", F.dense_rank().over(window)).where(F.col("_rank") == 1)
    else:
        window = Window.partitionBy(*key_names).orderBy(
            *ordering, F.col("_source_file").desc(), F.col(column["sourceindex"]).cast("bigint").desc()
        )
        survivors = keyed.withColumn("_rank", F.row_number().over(window)).where(F.col("_rank") == 1)
    if deleted_lines is not None:
        deleted, deleted_column = _with_fields(deleted_lines, list(key))
        deleted_keys = deleted.select(
            *[F.col(deleted_column[name]).alias(key_names[i]) for i, name in enumerate(key)]
        ).distinct()
        survivors = survivors.join(deleted_keys, on=key_names, how="left_anti")
    return survivors.select("value")
