"""data.validation: Great Expectations 1.x suites on each dataset.

Defaults (``defaults: true``): the label column exists and has no nulls, no column is entirely null,
numeric columns hold finite values, and the test set has exactly the training set's columns. The policy
adds any GX expectation by its GX name and arguments, per dataset (``train``, ``test``) or for ``all``::

    params:
      expectations:
        train:
          - expect_column_values_to_be_between: {column: age, min_value: 0, max_value: 120}
        all:
          - expect_column_values_to_not_be_null: {column: id}
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, Field

from auditor.registry import Check, Params
from auditor.report import Finding, Outcome

if TYPE_CHECKING:
    import pandas as pd

    from auditor.engine import AuditContext
    from auditor.inputs import Dataset

FLOAT_MAX = 1.7976931348623157e308
Scope = Literal["train", "test", "all"]


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    return gx


def expectation_class(name: str):
    """The GX expectation class for a snake_case GX name, e.g. expect_column_values_to_not_be_null."""
    if not name.startswith("expect_"):
        raise ValueError(f"{name!r} is not a Great Expectations expectation name (they start with 'expect_')")
    gx = _gx()
    class_name = "".join(part.capitalize() for part in name.split("_"))
    cls = getattr(gx.expectations, class_name, None)
    if cls is None:
        raise ValueError(f"unknown Great Expectations expectation {name!r}")
    return cls


def build_expectation(name: str, kwargs: dict[str, Any], index: int | None = None):
    cls = expectation_class(name)
    try:
        if index is not None:  # GX may return results in another order: tag each expectation
            return cls(**kwargs, meta={"auditor_index": index})
        return cls(**kwargs)
    except Exception as e:  # GX raises pydantic v1 ValidationError with several lines
        problem = " ".join(str(e).split())
        raise ValueError(f"{name}: invalid arguments: {problem}") from None


def _check_item(item: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any] | None]:
    if len(item) != 1:
        raise ValueError("each expectation is one 'expect_...: {arguments}' mapping")
    ((name, kwargs),) = item.items()
    build_expectation(name, kwargs or {})
    return item


ExpectationItem = Annotated[dict[str, dict[str, Any] | None], AfterValidator(_check_item)]


class ValidationParams(Params):
    defaults: bool = Field(True, description="run the built-in expectations")
    expectations: dict[Scope, list[ExpectationItem]] = Field(
        default_factory=dict, description="GX expectations by name and arguments, per dataset or for all"
    )


def _default_suite(ds: "Dataset", frame: "pd.DataFrame", train_columns: list[str] | None) -> list[tuple[str, dict]]:
    import pandas as pd

    items: list[tuple[str, dict]] = []
    if ds.label is not None and ds.label in frame.columns:
        items.append(("expect_column_values_to_not_be_null", {"column": ds.label}))
    for col in frame.columns:
        items.append(("expect_column_proportion_of_non_null_values_to_be_between", {"column": col, "min_value": 1e-12}))
        s = frame[col]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            items.append(("expect_column_values_to_be_between",
                          {"column": col, "min_value": -FLOAT_MAX, "max_value": FLOAT_MAX}))
    if train_columns is not None:
        items.append(("expect_table_columns_to_match_set", {"column_set": train_columns, "exact_match": True}))
    return items


def _describe(name: str, kwargs: dict) -> str:
    shown = {k: v for k, v in kwargs.items() if k != "column_set"}
    if name == "expect_column_values_to_be_between" and kwargs.get("min_value") == -FLOAT_MAX:
        return f"finite values in {kwargs['column']!r}"
    if name == "expect_column_proportion_of_non_null_values_to_be_between" and kwargs.get("min_value") == 1e-12:
        return f"column {kwargs['column']!r} not entirely null"
    args = ", ".join(f"{k}={v!r}" for k, v in shown.items())
    return f"{name}({args})"


class Validation(Check):
    id = "data.validation"
    title = "Dataset validation (Great Expectations)"
    family = "data"
    description = (
        "Runs Great Expectations suites on each dataset: label present and non-null, no all-null column, "
        "finite numerics, test columns equal to train columns, plus any expectation the policy lists."
    )
    requires = ("train",)
    default_severity = "high"
    controls = (
        "nist-ai-rmf:MEASURE 2.3", "nist-ai-rmf:MAP 2.3", "nist-ai-rmf:MEASURE 2.1",
        "iso-42001:A.7.4", "iso-42001:A.7.6", "iso-42001:A.6.2.4",
        "eu-ai-act:Art.10(2)", "eu-ai-act:Art.10(3)", "mitre-atlas:AML.T0059",
    )
    tracked_metrics = {"train.failed": "lower", "test.failed": "lower"}
    Params = ValidationParams

    def run(self, ctx: "AuditContext", params: ValidationParams) -> Outcome:
        gx = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_pandas("auditor")
        metrics: dict = {"defaults": params.defaults}
        findings = []
        train_columns = [str(c) for c in ctx.train.table().columns]
        for ds in ctx.datasets():
            frame = ds.table()
            items = []
            if params.defaults:
                items += _default_suite(ds, frame, train_columns if ds.name != "train" else None)
            for scope in ("all", ds.name):
                for item in params.expectations.get(scope, []):
                    ((name, kwargs),) = item.items()
                    items.append((name, dict(kwargs or {})))
            ctx.progress.step(f"validating {ds.name} ({len(items)} expectations)")
            suite = gx.ExpectationSuite(name=f"auditor-{ds.name}")
            for index, (name, kwargs) in enumerate(items):
                suite.add_expectation(build_expectation(name, kwargs, index))
            suite = context.suites.add(suite)
            batch = (
                source.add_dataframe_asset(ds.name)
                .add_batch_definition_whole_dataframe(f"{ds.name}-all")
                .get_batch(batch_parameters={"dataframe": frame})
            )
            result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
            failed = 0
            by_index = {int(r.expectation_config.meta["auditor_index"]): r for r in result.results}
            for index, (name, kwargs) in enumerate(items):
                r = by_index[index]
                if r.success:
                    continue
                failed += 1
                res = r.result or {}
                rows = res.get("unexpected_index_list")
                what = _describe(name, kwargs)
                error = _exception_message(r.exception_info)
                if error:
                    message = f"{ds.name}: {what} could not be evaluated: {error}"
                elif rows:
                    message = f"{ds.name}: {what} failed on {res.get('unexpected_count', len(rows))} of {res.get('element_count', ds.n_rows)} rows"
                else:
                    observed = res.get("observed_value")
                    detail = res.get("details", {}).get("mismatched") if isinstance(res.get("details"), dict) else None
                    message = f"{ds.name}: {what} failed (observed {_brief(detail or observed)})"
                findings.append(Finding(message, dataset=ds.name,
                                        rows=tuple(sorted(int(i) for i in rows)) if rows else None,
                                        details={"expectation": name, "kwargs": kwargs}))
            metrics[ds.name] = {"expectations": len(items), "failed": failed,
                                "success_percent": round(100.0 * (len(items) - failed) / max(len(items), 1), 3)}
        status = "fail" if findings else "pass"
        return Outcome(status=status, metrics=metrics, findings=findings)


def _exception_message(info: Any) -> str | None:
    if not info:
        return None
    if isinstance(info, dict) and "raised_exception" in info:
        return " ".join(str(info.get("exception_message")).split()) if info.get("raised_exception") else None
    if isinstance(info, dict):
        for v in info.values():
            msg = _exception_message(v)
            if msg:
                return msg
    return None


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 160 else text[:157] + "..."
