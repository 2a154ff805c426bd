"""Glue job: deliver published tables to the configured downstream locations.

Job arguments (Glue style, ``--key value``)::

    --published-root   s3://<bucket>/<namespace>/<app>/<study>
    --config           s3://<bucket>/config/deliveries.yaml
    --app <app> --study <study> [--name <delivery>] [--retention-only true] [--dry-run true]

The delivery's run id defaults to Glue's ``--JOB_RUN_ID``. No awsglue import.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bridge_downstream_adapters.export_runs import glue_bool, run_deliver


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="delivery", allow_abbrev=False)
    parser.add_argument("--published-root", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--name")
    parser.add_argument("--run-id")
    parser.add_argument("--JOB_RUN_ID", dest="job_run_id")
    parser.add_argument("--version", action="append", dest="versions")
    parser.add_argument("--retention-only", type=glue_bool, default=False)
    parser.add_argument("--dry-run", type=glue_bool, default=False)
    args, _glue_own = parser.parse_known_args(argv)
    args.run_id = args.run_id or args.job_run_id
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    return run_deliver(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
