"""Shared fixtures. Real reference data is read from ../shared/data beside the
project's root; tests that need it skip, with the reason, where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BRIDGE_DOWNSTREAM_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))

# No test may reach AWS: fake credentials and region for every boto3 client.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_SESSION_TOKEN", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)


def shared_path(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real reference data not available: {path} is absent")
    return path


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
