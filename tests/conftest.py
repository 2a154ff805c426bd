"""Fixtures for every test: no AWS credentials, the real reference data, one
Spark session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from project_paths import shared_path
from support import build_real_registry, build_sample_registry

# No test may reach AWS: fake credentials and region for every boto3 client.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_path()


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole test run (start-up is slow)."""
    from bridge_downstream.publish.spark_session import local_spark_session

    session = local_spark_session(app_name="bridge-downstream-tests")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """The registry built from samples/registry-src, once per test module."""
    return build_sample_registry(tmp_path_factory.mktemp("registry") / "reg")


@pytest.fixture(scope="module")
def real_registry(tmp_path_factory):
    """The registry built from the real sources in ../shared/data (skips where absent)."""
    return build_real_registry(tmp_path_factory.mktemp("registry") / "real")
