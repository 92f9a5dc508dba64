"""A Great Expectations Data Docs site for each run, built from the run's check statistics.

Checks run chunk by chunk in several tasks (and processes), so no single GX validation
result covers an entity. The statistics summed in the store are turned back into GX's own
result objects here, one suite result per entity, and rendered by GX's site builder.
Examples arrive already masked: Data Docs never see personal data unless masking is off.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from truesync.quality.checks import fresh_context

if TYPE_CHECKING:  # imported where a site is built: a process that builds none never imports GX
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.core.run_identifier import RunIdentifier


def build_site(
    directory: Path, flow: str, source: str, run_id: str, run_time: datetime, entities: dict[str, list[dict[str, Any]]]
) -> Path:
    """Render the run's checks per entity into ``directory``; returns the site's index page."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    context = fresh_context()
    site = {
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(directory)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    context.add_data_docs_site(site_name="run", site_config=site)
    run = RunIdentifier(run_name=run_id, run_time=run_time)
    for entity, items in entities.items():
        suite = f"{flow}.{entity}"
        key = ValidationResultIdentifier(ExpectationSuiteIdentifier(name=suite), run, f"{source}-{entity}")
        context.validation_results_store.set(key, _suite_result(suite, source, entity, run, items))
    context.build_data_docs(site_names=["run"])
    return directory / "index.html"


def _suite_result(
    suite: str, source: str, entity: str, run: RunIdentifier, items: list[dict[str, Any]]
) -> ExpectationSuiteValidationResult:
    from great_expectations.core import ExpectationSuiteValidationResult

    results = [_result(item) for item in items]
    passed = sum(r.success for r in results)
    return ExpectationSuiteValidationResult(
        success=passed == len(results),
        results=results,
        suite_name=suite,
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100.0 * passed / len(results) if results else 100.0,
        },
        meta={
            "run_id": run,
            "active_batch_definition": {
                "datasource_name": source,
                "data_connector_name": "truesync",
                "data_asset_name": entity,
                "batch_identifiers": {},
            },  # fmt: skip
        },
        batch_id=f"{source}-{entity}",
    )


def _result(item: dict[str, Any]) -> ExpectationValidationResult:
    """One check summed over the run's chunks, in the shape GX's renderers expect."""
    from great_expectations.core import ExpectationValidationResult
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    evaluated, unexpected = item["evaluated"], item["unexpected"]
    percent = 100.0 * unexpected / evaluated if evaluated else 0.0
    kwargs = item.get("kwargs") or ({"column": item["column"]} if item["column"] else {})
    config = ExpectationConfiguration(
        type=item["expectation"],
        kwargs=kwargs,
        meta={"severity": item["severity"], "phase": item["phase"], "rule": item["rule"]},
    )
    return ExpectationValidationResult(
        success=item["success"],
        expectation_config=config,
        result={
            "element_count": evaluated,
            "unexpected_count": unexpected,
            "unexpected_percent": percent,
            "unexpected_percent_total": percent,
            "unexpected_percent_nonmissing": percent,
            "missing_count": 0,
            "missing_percent": 0.0,
            "partial_unexpected_list": [e["value"] for e in item["examples"]],
            "observed_value": item["observed"],
        },
        exception_info={
            "raised_exception": item["error"] is not None,
            "exception_message": item["error"],
            "exception_traceback": None,
        },
    )
