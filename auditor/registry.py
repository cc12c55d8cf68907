"""The check interface and the registry of built-in checks.

A check is a small class that declares its id, family, needed inputs, default severity, control
mappings and a pydantic ``Params`` model (its policy parameters with defaults), and whose ``run``
returns an :class:`~auditor.report.Outcome`. Registration is explicit (the tuple in
``auditor.checks``), never an import side effect.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from auditor.engine import AuditContext
    from auditor.report import Outcome

#: inputs a check may need; the engine skips a check whose inputs are missing, with the reason
INPUTS = {
    "train": "a training set (--train)",
    "test": "a test set (--test)",
    "label": "a label column (--label, or a column named label/target/class/y)",
    "model": "a model (--model)",
    "sensitive": "a sensitive attribute (--sensitive COLUMN, or the policy's sensitive list)",
    "optimized": "an optimized model (--optimized)",
}


class Params(BaseModel):
    """Base for a check's policy parameters: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Check(ABC):
    id: ClassVar[str]
    title: ClassVar[str]
    family: ClassVar[str]
    description: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    default_severity: ClassVar[str] = "medium"
    controls: ClassVar[tuple[str, ...]] = ()
    #: metrics a baseline comparison tracks: dotted path in ``metrics`` -> "lower" or "higher" is better
    tracked_metrics: ClassVar[dict[str, str]] = {}
    Params: ClassVar[type[Params]] = Params
    #: True when ``run_spark`` audits Spark DataFrames whole; otherwise, with ``--engine spark``, ``run``
    #: audits the policy-sized sample drawn by Spark (and the report says so)
    spark_native: ClassVar[bool] = False

    @abstractmethod
    def run(self, ctx: "AuditContext", params: Params) -> "Outcome":
        """Audit ``ctx`` with ``params``; raise on a bug or unusable state (recorded as ``error``)."""

    def run_spark(self, ctx: "AuditContext", params: Params) -> "Outcome":
        """Audit ``ctx``'s :class:`~auditor.spark.SparkDataset` s (only when ``spark_native``)."""
        raise NotImplementedError(f"{self.id} has no Spark implementation")

    @classmethod
    def missing_inputs(cls, available: set[str]) -> list[str]:
        return [need for need in cls.requires if need not in available]


def all_checks() -> dict[str, type[Check]]:
    """The built-in checks by id, in the order they run."""
    from auditor.checks import ALL

    return {c.id: c for c in ALL}


def get(check_id: str) -> type[Check]:
    checks = all_checks()
    if check_id not in checks:
        raise KeyError(check_id)
    return checks[check_id]
