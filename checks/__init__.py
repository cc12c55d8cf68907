"""Built-in checks, one module per family. ``ALL`` is the registry, in run order.

Importing this package is cheap: each check imports its heavy libraries inside ``run``.
"""

from auditor.checks.backdoor import BackdoorScan
from auditor.checks.data import ClassBalance, Drift, Duplicates
from auditor.checks.labels import LabelIssues
from auditor.checks.poisoning import PoisoningScan
from auditor.checks.provenance import Integrity
from auditor.checks.validation import Validation

ALL = (
    Integrity,
    Validation,
    Duplicates,
    ClassBalance,
    Drift,
    LabelIssues,
    BackdoorScan,
    PoisoningScan,
)

__all__ = ["ALL"]
