"""The two publish engines behind one call: ``arrow`` (no JVM, one machine) and
``spark`` (as on Glue) publish the same versions from the same plan."""

from __future__ import annotations

from collections.abc import Callable

from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from bridge_downstream.publish.engine_steps import (
    PublishResult,
)
from bridge_downstream.publish.spark_engine import publish_dataset

ENGINES = ("arrow", "spark")


DEFAULT_LOCAL_ENGINE = "arrow"


ENGINE_ENVIRONMENT = "BRIDGE_DOWNSTREAM_ENGINE"


def once(factory: Callable[[], object]) -> Callable[[], object]:
    """``factory`` called at most once, on first use (a Spark session only when needed)."""
    made: list = []

    def get():
        if not made:
            made.append(factory())
        return made[0]

    return get


def publish_dataset_with(engine: str, spark_factory: Callable[[], object] | None, **kwargs) -> PublishResult:
    """:func:`.spark_engine.publish_dataset` on the chosen engine. ``spark_factory``
    is only called for ``spark`` (so the Arrow engine never starts a JVM)."""
    if engine == "spark":
        if spark_factory is None:
            raise ValueError("the spark engine needs a spark_factory")
        return publish_dataset(spark_factory(), **kwargs)
    if engine == "arrow":
        kwargs.pop("location", None)  # Spark's view of storage; Arrow reads and writes the Storage
        return publish_dataset_arrow(**kwargs)
    raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
