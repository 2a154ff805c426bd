"""The publish stage: NDJSON datasets -> deduplicated, relationalized Parquet
and CSV, one version per publish behind ``CURRENT``, registered in a catalog.

* :mod:`.engines` -- the two engines behind one call;
* :mod:`.arrow_engine` (one machine) and :mod:`.spark_engine` with
  :mod:`.spark_dedup` (Glue) -- read, deduplicate, relationalize, write Parquet;
* :mod:`.engine_steps` -- every step both engines share: plan, CSVs, file
  descriptions, manifest and commit;
* :mod:`.versions` -- ``CURRENT``, pruning and rollback; :mod:`.manifest` --
  what a version holds; :mod:`.catalog` -- the catalog interface and the
  local DuckDB catalog; :mod:`.spark_session` -- a local Spark session.
"""

from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from bridge_downstream.publish.catalog import Catalog, DuckDBCatalog
from bridge_downstream.publish.engine_steps import PublishResult, json_datasets, plan_dataset
from bridge_downstream.publish.engines import (
    DEFAULT_LOCAL_ENGINE,
    ENGINES,
    once,
    publish_dataset_with,
)
from bridge_downstream.publish.manifest import (
    PublishedFile,
    PublishedTable,
    PublishManifest,
    current_version,
    published_datasets,
    read_current_manifests,
    read_manifest,
)
from bridge_downstream.publish.spark_engine import (
    DirectLocation,
    SparkLocation,
    publish_all,
    publish_dataset,
)
from bridge_downstream.publish.spark_session import local_spark_session
from bridge_downstream.publish.versions import list_versions, prune_versions, rollback, set_current

__all__ = [
    "DEFAULT_LOCAL_ENGINE",
    "ENGINES",
    "Catalog",
    "DirectLocation",
    "DuckDBCatalog",
    "PublishManifest",
    "PublishResult",
    "PublishedFile",
    "PublishedTable",
    "SparkLocation",
    "current_version",
    "json_datasets",
    "list_versions",
    "local_spark_session",
    "once",
    "plan_dataset",
    "prune_versions",
    "publish_all",
    "publish_dataset",
    "publish_dataset_arrow",
    "publish_dataset_with",
    "published_datasets",
    "read_current_manifests",
    "read_manifest",
    "rollback",
    "set_current",
]
