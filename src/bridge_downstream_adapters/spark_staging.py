"""Spark on a local copy of S3 prefixes.

Spark reaches S3 itself on Glue. Local Spark against an emulated S3 (the
emulated deployment, workflow rehearsals) has no S3 connector that can reach
the emulator, so inputs are copied to a local folder before Spark reads them
and outputs are uploaded after Spark writes them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bridge_downstream.common.storage import Storage


class StagedLocation:
    def __init__(self, root: str | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="bridge-downstream-stage-"))

    def _local(self, prefix: str, kind: str) -> Path:
        return self.root / kind / prefix

    def read_uri(self, storage: Storage, prefix: str) -> str:
        local = self._local(prefix, "in")
        if local.exists():
            shutil.rmtree(local)
        for info in storage.list(prefix.rstrip("/") + "/"):
            target = local / info.key[len(prefix.rstrip("/")) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(storage.read_bytes(info.key))
        local.mkdir(parents=True, exist_ok=True)
        return str(local)

    def write_uri(self, storage: Storage, prefix: str) -> str:
        local = self._local(prefix, "out")
        if local.exists():
            shutil.rmtree(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        return str(local)

    def written(self, storage: Storage, prefix: str) -> None:
        local = self._local(prefix, "out")
        for dirpath, _dirs, files in os.walk(local):
            for name in files:
                if name.startswith(".") or name.endswith(".crc"):
                    continue
                path = Path(dirpath) / name
                storage.upload_file(str(path), prefix.rstrip("/") + "/" + path.relative_to(local).as_posix())
        shutil.rmtree(local, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
