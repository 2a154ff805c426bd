"""Exports of published versions to places outside the pipeline root.

Pure logic only (no boto3, no synapseclient):

* :mod:`.synapse_plan` -- the Synapse folder tree a set of publish manifests
  should produce, and the diff (a list of actions) from what is there now;
* :mod:`.delivery` -- copying a published version of chosen tables to a
  downstream :class:`~bridge_downstream.common.storage.Storage`, the delivery
  manifest and the retention choice.

The executors that talk to Synapse and S3 live in
``bridge_downstream_adapters``.
"""

from bridge_downstream.exports import delivery, synapse_plan

__all__ = ["delivery", "synapse_plan"]
