"""BridgeDownstream core: archive reading, schema resolution, validation,
enrichment, relationalize, dedup and writers.

The core never imports boto3 or awsglue. Storage, queues and catalogs reach
it through the small interfaces in :mod:`bridge_downstream.storage`,
:mod:`bridge_downstream.sinks` and :mod:`bridge_downstream.catalog`; the AWS
implementations live in :mod:`bridge_downstream_aws`.
"""

__version__ = "0.1.0"
