"""Glue job: mirror the published tables of a pipeline root into Synapse.

Job arguments (Glue style, ``--key value``)::

    --published-root       s3://<bucket>/<namespace>/<app>/<study>
    --synapse-folder-id    syn12345678
    --ssm-parameter-name   /bridge-downstream/synapse-auth-token
    [--dataset X] [--table T] [--storage-location-id N] [--synapse-endpoint URL] [--dry-run true]

Glue adds its own arguments (``--JOB_NAME``, ``--JOB_RUN_ID``, ...); they are
ignored. Needs ``synapseclient`` in ``--additional-python-modules``. No
awsglue import: this is a Python shell-style job on the adapters.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bridge_downstream_adapters.export_runs import add_synapse_arguments, run_synapse_export


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="synapse_export", allow_abbrev=False)
    add_synapse_arguments(parser, glue=True)
    args, _glue_own = parser.parse_known_args(argv)  # Glue's own --JOB_NAME etc.
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    return run_synapse_export(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
