"""BridgeDownstream core: one package per pipeline stage, in the order data flows.

* :mod:`.ingest` -- upload archives and exports -> validated NDJSON datasets;
* :mod:`.relationalize` -- nested rows -> flat, linked tables (a plan, two executors);
* :mod:`.publish` -- datasets -> versioned Parquet and CSV, catalogued;
* :mod:`.exports` -- published versions -> Synapse and downstream buckets;
* :mod:`.replay` -- invalid records back through ingest;

beside them :mod:`.config` (registry, profiles, the run configuration) and
:mod:`.common` (storage interface, key layout, spools, JSON codec).

The core never imports boto3, awsglue, synapseclient, the adapters or the
command line: storage, queues and catalogs reach it through small interfaces
(:class:`~bridge_downstream.common.storage.Storage`,
:class:`~bridge_downstream.ingest.invalid_sink.InvalidSink`,
:class:`~bridge_downstream.publish.catalog.Catalog`), implemented for AWS
and Synapse in ``bridge_downstream_adapters``. The code map is in
docs/architecture.md.
"""

__version__ = "0.1.0"
