"""The Azure Monitor workbook: the report's view over ``BenchmarkRuns_CL`` in Log Analytics.

A workbook is a JSON document (``"version": "Notebook/1.0"``, a list of items:
markdown, parameters, queries). This module writes it from
:mod:`hal_logging.report.kql`, so its queries are the cookbook's and its columns
are the schema's. ``hal-logging schema --part workbook`` prints it;
``infrastructure/azure/workbook.json`` is that output (a test compares them) and
``main.bicep`` deploys it as a ``Microsoft.Insights/workbooks`` resource, putting
the workspace's resource id where ``${WORKSPACE_RESOURCE_ID}`` stands.

Sections: a time range and a run picker, the run's figures, tasks by outcome,
the task table (exit statuses, first errors, failed tasks first), the run's
errors, volume over time, and one task's log (a task picker).
"""

from __future__ import annotations

from typing import Any, Final

from hal_logging.report import kql

WORKSPACE_PLACEHOLDER: Final = "${WORKSPACE_RESOURCE_ID}"
_RESOURCE_TYPE: Final = "microsoft.operationalinsights/workspaces"
_SCHEMA: Final = (
    "https://github.com/Microsoft/Application-Insights-Workbooks/blob/master/schema/workbook.json"
)

NOTE: Final = (
    "## hal-logging: benchmark runs\n"
    "Pick a run: its figures, tasks by outcome, the task table (exit status from the "
    "forwarder's own final row; 128+N means killed by signal N), its errors with tracebacks, "
    "log volume over time, and one task's log. The same view as `hal-logging report` on the "
    "local workspace.\n\n"
    "**Basic-plan table:** every query here reads only `BenchmarkRuns_CL` (no join, union, "
    "user function or cross-resource query) and takes its time range from the picker, so all "
    "sections work on a Basic table too; there each query is billed per GB scanned, so keep "
    "the time range short."
)


def _query(name: str, title: str, query: str, visualization: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": 3,
        "name": name,
        "content": {
            "version": "KqlItem/1.0",
            "query": query,
            "size": 0,
            "title": title,
            "timeContextFromParameter": "TimeRange",
            "queryType": 0,
            "resourceType": _RESOURCE_TYPE,
            "visualization": visualization,
            **extra,
        },
    }


def _grid(*, formatters: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "gridSettings": {
            "formatters": [
                {"columnMatch": column, "formatter": f["formatter"], **f.get("extra", {})}
                for column, f in (formatters or {}).items()
            ],
            "filter": True,
        }
    }


def queries() -> dict[str, str]:
    """Every query of the workbook by item name (for the KQL check)."""
    out: dict[str, str] = {}
    for item in workbook()["items"]:
        content = item["content"]
        if item["type"] == 3:
            out[item["name"]] = content["query"]
        elif item["type"] == 9:
            for p in content["parameters"]:
                if "query" in p:
                    out[f"{item['name']}/{p['name']}"] = p["query"]
    return out


def _parameters(name: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": 9,
        "name": name,
        "content": {
            "version": "KqlParameterItem/1.0",
            "parameters": params,
            "style": "pills",
            "queryType": 0,
            "resourceType": _RESOURCE_TYPE,
        },
    }


def _dropdown(pid: str, name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "id": pid,
        "version": "KqlParameterItem/1.0",
        "name": name,
        "label": label,
        "type": 2,
        "isRequired": True,
        "query": query,
        "typeSettings": {"additionalResourceOptions": [], "showDefault": False},
        "timeContextFromParameter": "TimeRange",
        "queryType": 0,
        "resourceType": _RESOURCE_TYPE,
    }


def workbook() -> dict[str, Any]:
    run, task = kql.WORKBOOK_RUN, kql.WORKBOOK_TASK
    status_colors = {
        "Outcome": {
            "formatter": 18,
            "extra": {
                "formatOptions": {
                    "thresholdsOptions": "colors",
                    "thresholdsGrid": [
                        {"operator": "==", "thresholdValue": "ok", "representation": "green"},
                        {
                            "operator": "==",
                            "thresholdValue": "failed",
                            "representation": "redBright",
                        },
                        {"operator": "==", "thresholdValue": "killed", "representation": "purple"},
                        {"operator": "Default", "representation": "yellow"},
                    ],
                }
            },
        },
        "Errors": {"formatter": 8, "extra": {"formatOptions": {"palette": "redBright"}}},
        "Bytes": {
            "formatter": 0,
            "extra": {"numberFormat": {"unit": 2, "options": {"style": "decimal"}}},
        },
    }
    items: list[dict[str, Any]] = [
        {"type": 1, "name": "about", "content": {"json": NOTE}},
        _parameters(
            "pickers",
            [
                {
                    "id": "5d1c7a62-4b0e-4d5e-9a51-3f0c6f3e9a01",
                    "version": "KqlParameterItem/1.0",
                    "name": "TimeRange",
                    "label": "Time range",
                    "type": 4,
                    "isRequired": True,
                    "value": {"durationMs": 604800000},
                    "typeSettings": {
                        "selectableValues": [
                            {"durationMs": ms}
                            for ms in (
                                3600000,
                                14400000,
                                86400000,
                                259200000,
                                604800000,
                                2592000000,
                            )
                        ],
                        "allowCustom": True,
                    },
                },
                _dropdown("5d1c7a62-4b0e-4d5e-9a51-3f0c6f3e9a02", "RunID", "Run", kql.runs()),
            ],
        ),
        _query("run", "The run", kql.run_summary(run), "table", **_grid()),
        _query("outcomes", "Tasks by outcome", kql.outcomes(run), "piechart"),
        _query(
            "tasks",
            "Tasks: failed and killed first",
            kql.task_table(run),
            "table",
            **_grid(formatters=status_colors),
        ),
        _query("errors", "Errors, with tracebacks", kql.errors(run), "table", **_grid()),
        _query(
            "volume",
            "Log volume and errors over time",
            kql.volume(run, "{TimeRange:grain}"),
            "timechart",
        ),
        _parameters(
            "task-picker",
            [
                _dropdown(
                    "5d1c7a62-4b0e-4d5e-9a51-3f0c6f3e9a03", "TaskID", "Task", kql.tasks_of_run(run)
                )
            ],
        ),
        _query("task-log", "The task's log", kql.task_log(run, task), "table", **_grid()),
    ]
    return {
        "version": "Notebook/1.0",
        "items": items,
        "fallbackResourceIds": [WORKSPACE_PLACEHOLDER],
        "$schema": _SCHEMA,
    }
