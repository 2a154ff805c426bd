"""Builders shared by the tests: registries, archives, ingest runs."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.config.registry import SchemaRegistry, build_registry
from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream.ingest.run import run_ingest
from project_paths import PROJECT_ROOT, shared_path

SAMPLES = PROJECT_ROOT / "samples"
SAMPLE_REGISTRY_SOURCE = SAMPLES / "registry-src"

SPELLING_ARCHIVE = "OCJByUtSrVTYtqObYp7XZV_J-mtbSpelling.zip"
# The S3 object metadata Bridge wrote for the real Spelling upload.
SPELLING_METADATA = {
    "recordid": "OCJByUtSrVTYtqObYp7XZV_J",
    "assessmentid": "spelling",
    "assessmentrevision": "5",
    "uploadedon": "2022-02-15T18:48:15.890Z",
    "clientinfo": (
        "ClientInfo [appName=MobileToolboxApp, appVersion=73, deviceName=iPhone 7 Plus, osName=iPhone OS, "
        "osVersion=15.1, sdkName=BridgeClientKMM, sdkVersion=0]"
    ),
}
TASKDATA_URL = "https://raw.githubusercontent.com/MobileToolbox/MobileToolboxSchemas/0.9.8/OldCombinedSchema/taskData_combinedSchema.json"
GRADUAL_ONSET_URL = (
    "https://raw.githubusercontent.com/MobileToolbox/MTBfx/9f7ab73ae52127d46ef417ae807286fcd4bb9d0c/"
    "JSONschema/2022_12_01_taskData_GradualOnset_Schema.json"
)


def build_sample_registry(out: Path, schema_mapping: Path | None = None) -> SchemaRegistry:
    """The bundled samples' registry (with another schema mapping, if given)."""
    source = SAMPLE_REGISTRY_SOURCE
    build_registry(
        archive_map=source / "archive-map.json",
        schema_dirs=[source / "schemas"],
        schema_mapping=schema_mapping or source / "schema-mapping.json",
        dataset_mapping=source / "dataset-mapping.json",
        pipeline_rules=source / "pipeline-rules.json",
        out=out,
    )
    return SchemaRegistry.load(out)


def build_real_registry(out: Path, rules: dict | None = None) -> SchemaRegistry:
    """The real registry: mobile-client-json plus the MTB task-data schemas."""
    mobile = shared_path("mobile-client-json")
    taskdata = shared_path("mtb-taskdata")
    config = shared_path("bridge-downstream-config")
    rules_file = out.parent / f"{out.name}-rules.json"
    rules_file.write_text(json.dumps(rules or {"file_aliases": {"microphone.json": "microphone_levels.json"}}))
    build_registry(
        archive_map=mobile / "archive-map.json",
        schema_dirs=[mobile / "schemas"],
        schema_mapping=config / "schema_mapping.json",
        dataset_mapping=config / "dataset_mapping.json",
        aliases={
            TASKDATA_URL: taskdata / "archiveSchemas" / "taskData_combinedSchema.json",
            GRADUAL_ONSET_URL: taskdata / "pinned" / "2022_12_01_taskData_GradualOnset_Schema.json",
        },
        pipeline_rules=rules_file,
        out=out,
    )
    return SchemaRegistry.load(out)


def write_archive(path: Path, members: dict[str, object], metadata: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            if not isinstance(content, (bytes, str)):
                content = json.dumps(content)
            archive.writestr(name, content)
    if metadata is not None:
        Path(f"{path}.metadata.json").write_text(json.dumps(metadata))
    return path


def mtb_metadata(
    record_id: str,
    assessment: str = "number-match",
    revision: int = 1,
    uploaded_on: str = "2024-03-01T10:00:00.000Z",
    **extra,
) -> dict:
    return {
        "recordid": record_id,
        "assessmentid": assessment,
        "assessmentrevision": str(revision),
        "uploadedon": uploaded_on,
        "appid": "sample-app",
        **extra,
    }


def ingest_folder(folder: Path, output: Path, registry: SchemaRegistry, profile: str = "mtb", workers: int = 1) -> dict:
    storage = LocalStorage(folder)
    inputs = [ArchiveInput(storage, p.relative_to(folder).as_posix()) for p in sorted(folder.rglob("*.zip"))]
    out = LocalStorage(output)
    return run_ingest(
        inputs,
        registry=registry,
        profile=load_profile(profile),
        output=out,
        sink=StorageInvalidSink(out),
        workers=workers,
    )


def read_dataset(output: Path, dataset_id: str) -> list[dict]:
    rows = []
    for part in sorted((output / "json" / f"dataset={dataset_id}").rglob("*.ndjson")):
        rows.extend(json.loads(line) for line in part.read_text().splitlines() if line.strip())
    return rows


def invalid_entries(output: Path) -> dict[str, dict]:
    """Invalid sink entries by record id."""
    entries = {}
    for path in sorted((output / "invalid").glob("*.json")):
        entry = json.loads(path.read_text())
        entries[entry["validation_result"]["recordId"]] = entry
    return entries


def load_job(name: str):
    """A Glue job script from src/glue/jobs, as a module."""
    spec = importlib.util.spec_from_file_location(name, PROJECT_ROOT / "src" / "glue" / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ListingStorage(LocalStorage):
    """LocalStorage that remembers every prefix it was asked to list."""

    def __init__(self, root):
        super().__init__(root)
        self.listed: list[str] = []

    def list(self, prefix):
        self.listed.append(prefix)
        return super().list(prefix)
