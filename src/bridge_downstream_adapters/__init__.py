"""Adapters: the AWS and Synapse implementations of the core's interfaces.

Imports flow one way: entry points -> adapters -> core. Nothing in
``bridge_downstream`` imports from here.
"""
