"""Fixtures of the ingest tests."""

import pytest

from support import SAMPLES, ingest_folder


@pytest.fixture(scope="module")
def sample_run(registry, tmp_path_factory):
    """The bundled sample archives ingested with two workers: (output folder, run report)."""
    output = tmp_path_factory.mktemp("sample-run")
    return output, ingest_folder(SAMPLES / "archives", output, registry, workers=2)
