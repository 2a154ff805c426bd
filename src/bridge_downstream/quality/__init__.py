"""Data quality of published versions: the profile's expectations run with
Great Expectations 1.x on each new version (docs/quality.md).

Imports :mod:`bridge_downstream.common`, :mod:`bridge_downstream.config` and
:mod:`bridge_downstream.publish`.
"""

from bridge_downstream.quality.compare import (
    CompareError,
    CompareOptions,
    ComparisonReport,
    TableComparison,
    compare_storages,
    read_published_spark,
)
from bridge_downstream.quality.html_report import render_quality_html
from bridge_downstream.quality.runner import (
    REPORT_NAME,
    PandasTables,
    SparkTables,
    TableSource,
    check_version,
    expectations_for,
    failed_results,
    publish_quality_check,
    run_expectations,
)

__all__ = [
    "REPORT_NAME",
    "CompareError",
    "CompareOptions",
    "ComparisonReport",
    "PandasTables",
    "SparkTables",
    "TableComparison",
    "TableSource",
    "check_version",
    "compare_storages",
    "expectations_for",
    "failed_results",
    "publish_quality_check",
    "read_published_spark",
    "render_quality_html",
    "run_expectations",
]
