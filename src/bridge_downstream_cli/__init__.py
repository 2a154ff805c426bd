"""``bridge-downstream``: the local command line, an entry point like the Glue
jobs and the Lambda.

It reads the options, resolves them once into a
:class:`~bridge_downstream.config.RunConfig` and hands that to the core's
stages; the AWS and Synapse pieces it needs come from the adapters.

* :mod:`.main` -- the parser and the dispatch;
* :mod:`.pipeline_commands` -- ``registry build``, ``ingest``, ``publish``,
  ``run``, ``rollback``, ``query``;
* :mod:`.invalid_commands` -- ``invalid list|show|replay``;
* :mod:`.export_commands` -- ``export synapse|deliver``.
* :mod:`.ledger_commands` -- ``ledger forget``;
* :mod:`.cli_context` -- the config file, the options every command takes, logging;
* :mod:`.exit_codes` -- what a command exits with.
"""

from bridge_downstream_cli.main import build_parser, main

__all__ = ["build_parser", "main"]
