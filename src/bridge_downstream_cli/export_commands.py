"""``bridge-downstream export synapse`` and ``bridge-downstream export deliver``.

The runs and their options live in
:mod:`bridge_downstream_adapters.export_runs`, shared with the Glue jobs that
run the same exports in AWS; this module only registers them as commands.
"""

from __future__ import annotations

import argparse

from bridge_downstream_adapters.export_runs import (
    add_deliver_arguments,
    add_synapse_arguments,
    run_deliver,
    run_synapse_export,
)


def add_export_commands(subparsers) -> argparse.ArgumentParser:
    """Register ``export synapse`` and ``export deliver`` on a CLI's subparsers."""
    export = subparsers.add_parser("export", help="export published tables to Synapse or downstream buckets")
    commands = export.add_subparsers(dest="export_command", metavar="{synapse,deliver}")
    commands.required = True
    synapse = commands.add_parser(
        "synapse", help="mirror the published tables into a Synapse folder tree (external S3 file handles)"
    )
    add_synapse_arguments(synapse)
    synapse.set_defaults(handler=run_synapse_export, func=run_synapse_export)
    deliver = commands.add_parser(
        "deliver", help="copy published tables to the configured downstream locations, manifest last"
    )
    add_deliver_arguments(deliver)
    deliver.set_defaults(handler=run_deliver, func=run_deliver)
    return export
