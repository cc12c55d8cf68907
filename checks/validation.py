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
from typing import TYPE_CHECKING, Annotated, Any, Callable, Literal, Sequence

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

    numeric = {col for col in frame.columns if pd.api.types.is_numeric_dtype(frame[col])
               and not pd.api.types.is_bool_dtype(frame[col]) and frame[col].notna().any()}
    return default_suite(ds.label, list(frame.columns), numeric, train_columns)


def default_suite(label: str | None, columns: list[str], numeric: set[str],
                  train_columns: list[str] | None) -> list[tuple[str, dict]]:
    """The built-in expectations for a table with these columns; ``train_columns`` for the test set, whose
    columns must equal the training set's. ``numeric``: the non-boolean numeric columns holding any value, as
    each engine types them (an all-null column is typed differently by the readers, and fails anyway)."""
    items: list[tuple[str, dict]] = []
    if label is not None and label in columns:
        items.append(("expect_column_values_to_not_be_null", {"column": label}))
    for col in columns:
        items.append(("expect_column_proportion_of_non_null_values_to_be_between", {"column": col, "min_value": 1e-12}))
        if col in numeric:
            items.append(("expect_column_values_to_be_between",
                          {"column": col, "min_value": -FLOAT_MAX, "max_value": FLOAT_MAX}))
    if train_columns is not None:
        items.append(("expect_table_columns_to_match_set", {"column_set": train_columns, "exact_match": True}))
    return items


def suite_items(name: str, params: "ValidationParams", defaults: "Callable[[], list[tuple[str, dict]]]") -> list[tuple[str, dict]]:
    """The (GX name, arguments) a dataset is validated with: the defaults when enabled, then the policy's."""
    items = list(defaults()) if params.defaults else []
    for scope in ("all", name):
        for item in params.expectations.get(scope, []):
            ((gx_name, kwargs),) = item.items()
            items.append((gx_name, dict(kwargs or {})))
    return items


def gx_context():
    """(gx module, an ephemeral GX context) with GX's tqdm progress bars off: they would write to stderr."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return gx, context


def add_suite(context, name: str, items: list[tuple[str, dict]], indexes: "Sequence[int] | None" = None):
    """A GX suite of ``items`` (or those at ``indexes``), each tagged with its index in ``items``."""
    gx = _gx()
    suite = gx.ExpectationSuite(name=name)
    for index in range(len(items)) if indexes is None else indexes:
        gx_name, kwargs = items[index]
        suite.add_expectation(build_expectation(gx_name, kwargs, index))
    return context.suites.add(suite)


def results_by_index(result) -> dict[int, Any]:
    """A suite's results by the index tag of their expectation (GX may return them in another order)."""
    return {int(r.expectation_config.meta["auditor_index"]): r for r in result.results}


def failure_finding(dataset: str, name: str, kwargs: dict, r, rows: "Sequence[int] | None", n_rows: int) -> Finding:
    """The finding for a failed expectation: an error, its failing ``rows`` (file rows), or what GX observed."""
    res = r.result or {}
    what = _describe(name, kwargs)
    error = exception_message(r.exception_info)
    if error and out_of_memory(r.exception_info):  # the data was not judged at all: fail closed as an error
        raise MemoryError(f"{dataset}: {what} could not be evaluated: {error}")
    if error:
        message = f"{dataset}: {what} could not be evaluated: {error}"
    elif rows:
        message = f"{dataset}: {what} failed on {res.get('unexpected_count', len(rows))} of {res.get('element_count', n_rows)} rows"
    else:
        observed = res.get("observed_value")
        detail = res.get("details", {}).get("mismatched") if isinstance(res.get("details"), dict) else None
        message = f"{dataset}: {what} failed (observed {_brief(detail or observed)})"
    return Finding(message, dataset=dataset, rows=tuple(sorted(int(i) for i in rows)) if rows else None,
                   details={"expectation": name, "kwargs": kwargs})


def dataset_metrics(items: list, failed: int) -> dict:
    return {"expectations": len(items), "failed": failed,
            "success_percent": round(100.0 * (len(items) - failed) / max(len(items), 1), 3)}


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
    spark_native = True

    def run(self, ctx: "AuditContext", params: ValidationParams) -> Outcome:
        gx, context = gx_context()
        source = context.data_sources.add_pandas("auditor")
        metrics: dict = {"defaults": params.defaults}
        findings = []
        train_columns = [str(c) for c in ctx.train.table().columns]
        for ds in ctx.datasets():
            frame = ds.table()
            items = suite_items(ds.name, params,
                                lambda: _default_suite(ds, frame, train_columns if ds.name != "train" else None))
            ctx.progress.step(f"validating {ds.name} ({len(items)} expectations)")
            suite = add_suite(context, f"auditor-{ds.name}", items)
            batch = (
                source.add_dataframe_asset(ds.name)
                .add_batch_definition_whole_dataframe(f"{ds.name}-all")
                .get_batch(batch_parameters={"dataframe": frame})
            )
            result = batch.validate(suite, result_format={"result_format": "COMPLETE"})
            by_index = results_by_index(result)
            failed = [i for i in range(len(items)) if not by_index[i].success]
            for index in failed:
                r, (name, kwargs) = by_index[index], items[index]
                rows = (r.result or {}).get("unexpected_index_list")
                findings.append(failure_finding(ds.name, name, kwargs, r, rows, ds.n_rows))
            metrics[ds.name] = dataset_metrics(items, len(failed))
        status = "fail" if findings else "pass"
        return Outcome(status=status, metrics=metrics, findings=findings)

    def run_spark(self, ctx: "AuditContext", params: ValidationParams) -> Outcome:
        from auditor.checks.validation_spark import validate

        return validate(ctx, params)


def exception_message(info: Any) -> str | None:
    if not info:
        return None
    if isinstance(info, dict) and "raised_exception" in info:
        return " ".join(str(info.get("exception_message")).split()) if info.get("raised_exception") else None
    if isinstance(info, dict):
        for v in info.values():
            msg = exception_message(v)
            if msg:
                return msg
    return None


#: how running out of memory shows in GX's exception info (numpy, Python, a Spark JVM)
_OUT_OF_MEMORY = ("MemoryError", "Unable to allocate", "OutOfMemoryError", "Java heap space")


def out_of_memory(info: Any) -> bool:
    """Whether GX could not evaluate an expectation for lack of memory (not because of the data, e.g. a
    missing column): then the check is an error, never a data failure a reader would act on. Seen at 50M rows
    on the pandas engine: 26 of 30 expectations "failed" with numpy's "Unable to allocate"."""
    if isinstance(info, dict):
        return any(out_of_memory(v) for v in info.values())
    return isinstance(info, str) and any(s in info for s in _OUT_OF_MEMORY)


def _plain(value: Any) -> Any:
    """An observed value as plain Python, floats to 12 significant digits: the same text from either engine
    (numpy scalars print as ``np.float64(...)``, and Spark sums floats in another order than pandas)."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar
        value = value.item()
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _plain(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(x) for x in value)
    return value


def _brief(value: Any) -> str:
    text = repr(_plain(value))
    return text if len(text) < 160 else text[:157] + "..."
