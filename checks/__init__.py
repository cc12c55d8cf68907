"""Built-in checks, one module per family. ``ALL`` is the registry, in run order.

Importing this package is cheap: each check imports its heavy libraries inside ``run``.
"""

from auditor.checks.contamination import NgramContamination
from auditor.checks.data import ClassBalance, Drift, Duplicates
from auditor.checks.labels import LabelIssues
from auditor.checks.leakage import ExactDuplicates, GroupLeakage, NearDuplicates, TargetLeakage, TemporalLeakage
from auditor.checks.provenance import Integrity
from auditor.checks.validation import Validation

ALL = (
    Integrity,
    Validation,
    Duplicates,
    ClassBalance,
    Drift,
    LabelIssues,
    ExactDuplicates,
    NearDuplicates,
    TargetLeakage,
    GroupLeakage,
    TemporalLeakage,
    NgramContamination,
)

__all__ = ["ALL"]
