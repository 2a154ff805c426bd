"""docs/delivery.md's example configuration works as written (issue 24): its
YAML block, only the destination made a local folder, delivers the tables it
names from the samples' published output."""

from __future__ import annotations

import json
import re

from bridge_downstream_cli.main import main
from project_paths import PROJECT_ROOT
from support import SAMPLES, build_sample_registry


def _doc_config() -> str:
    text = (PROJECT_ROOT / "docs" / "delivery.md").read_text()
    (block,) = re.findall(r"```yaml\n(deliveries:.*?)```", text, flags=re.DOTALL)
    return block


def test_the_documented_delivery_config_delivers_the_tables_it_names(tmp_path):
    import yaml

    registry = tmp_path / "registry"
    build_sample_registry(registry)
    output, drop = tmp_path / "out", tmp_path / "drop"
    run = ["run", str(SAMPLES / "archives"), "--registry", str(registry), "--output", str(output)]
    assert main([*run, "--profile", "mtb", "--no-progress", "--max-invalid", "100%"]) == 0
    shown = _doc_config()
    config = re.sub(r"destination: \S+", f"destination: {drop}", shown)
    (tmp_path / "deliveries.yaml").write_text(config)
    (entry,) = yaml.safe_load(shown)["deliveries"]

    code = main(
        [
            "export",
            "deliver",
            "--published-root",
            str(output),
            "--config",
            str(tmp_path / "deliveries.yaml"),
            "--app",
            entry["app"],
            "--study",
            entry["study"],
        ]
    )

    assert code == 0
    (manifest_path,) = drop.glob("*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert sorted(manifest["tables"]) == sorted(entry["tables"])
    assert {f["format"] for f in manifest["files"]} == set(entry["formats"])
    assert all(manifest["tables"][table]["rows"] > 0 for table in entry["tables"])
