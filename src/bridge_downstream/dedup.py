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

from .profiles import Profile


def _field(name: str):
    from pyspark.sql import functions as F

    # Bracket notation: field names may hold characters a dotted path cannot.
    return F.get_json_object(F.col("value"), "$['" + name.replace("'", "\\'") + "']")


def _ordering(profile: Profile):

    columns = []
    for name, descending in profile.dedup.order_by:
        column = _field(name)
        columns.append(column.desc_nulls_last() if descending else column.asc_nulls_last())
    return columns


def dedup_lines(lines, dataset_id: str, profile: Profile, deleted_lines=None):
    """The surviving lines of ``lines`` (DataFrame[value: string])."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = profile.dedup.key_for(dataset_id)
    if not key:
        return lines
    lines = lines.where(F.trim(F.col("value")) != "").withColumn("_source_file", F.input_file_name())
    key_columns = [_field(name).alias(f"_key{i}") for i, name in enumerate(key)]
    keyed = lines.select("*", *key_columns)
    key_names = [f"_key{i}" for i in range(len(key))]
    if profile.kind == "bridge-archive":
        window = Window.partitionBy(*key_names).orderBy(*_ordering(profile), F.col("_source_file").desc())
        survivors = keyed.withColumn("_rank", F.dense_rank().over(window)).where(F.col("_rank") == 1)
    else:
        window = Window.partitionBy(*key_names).orderBy(
            *_ordering(profile), F.col("_source_file").desc(), _field("sourceindex").cast("bigint").desc()
        )
        survivors = keyed.withColumn("_rank", F.row_number().over(window)).where(F.col("_rank") == 1)
    if deleted_lines is not None:
        deleted_keys = deleted_lines.select(*[_field(name).alias(f"_key{i}") for i, name in enumerate(key)]).distinct()
        survivors = survivors.join(deleted_keys, on=key_names, how="left_anti")
    return survivors.select("value")
