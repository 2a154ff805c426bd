"""What every stage uses: the storage interface and the local folder storage,
the key layout of a pipeline root, JSON-lines spools and the JSON codec.

Imports nothing else of the project.
"""

from bridge_downstream.common import jsoncodec, layout, spool
from bridge_downstream.common.storage import (
    LocalStorage,
    ObjectInfo,
    Storage,
    UnreadableMetadata,
    delete_prefix,
    file_digests,
    join_key,
    read_stream,
)

__all__ = [
    "LocalStorage",
    "ObjectInfo",
    "Storage",
    "UnreadableMetadata",
    "delete_prefix",
    "file_digests",
    "join_key",
    "jsoncodec",
    "layout",
    "read_stream",
    "spool",
]
