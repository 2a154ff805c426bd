"""``--metadata KEY=VALUE``: Bridge metadata for every archive of a run.

Locally an archive's metadata is its sidecar file; inputs that are read-only
(a mounted delivery, a colleague's folder) could only get metadata by being
copied. Run-wide metadata fills in what an archive's own metadata does not
say; its own always wins. Keys are lower-cased, as S3 gives user metadata.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import BinaryIO

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream_cli.errors import UsageError


def parse_metadata_options(items: Iterable[str] | None) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--metadata takes KEY=VALUE, not {item!r}")
        metadata[key.strip().lower()] = value
    return metadata


class InputStorage(LocalStorage):
    """A folder of input archives whose metadata is the run's, overlaid by each archive's own."""

    def __init__(self, root: str | os.PathLike, run_metadata: Mapping[str, str]):
        super().__init__(root)
        self.run_metadata = dict(run_metadata)

    def metadata(self, key: str) -> Mapping[str, object]:
        return {**self.run_metadata, **super().metadata(key)}

    def open_read_with_metadata(self, key: str) -> tuple[BinaryIO, Mapping[str, object]]:
        metadata = self.metadata(key)  # first, as LocalStorage: a damaged sidecar leaves no file open
        return self.open_read(key), metadata


def input_storage(root: str | os.PathLike, run_metadata: Mapping[str, str] | None) -> LocalStorage:
    return InputStorage(root, run_metadata) if run_metadata else LocalStorage(root)
