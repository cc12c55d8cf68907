"""Built-in checks, one module per family. ``ALL`` is the registry, in run order.

Importing this package is cheap: each check imports its heavy libraries inside ``run``.
"""

from auditor.checks.contamination import NgramContamination
from auditor.checks.backdoor import BackdoorScan
from auditor.checks.data import ClassBalance, Drift, Duplicates
from auditor.checks.fairness import FairnessData, FairnessModel
from auditor.checks.labels import LabelIssues
from auditor.checks.leakage import ExactDuplicates, GroupLeakage, NearDuplicates, TargetLeakage, TemporalLeakage
from auditor.checks.optimization import Comparison
from auditor.checks.poisoning import PoisoningScan
from auditor.checks.provenance import Integrity
from auditor.checks.robustness import Adversarial, Noise
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
    FairnessData,
    FairnessModel,
    Adversarial,
    Noise,
    BackdoorScan,
    PoisoningScan,
    Comparison,
)

__all__ = ["ALL"]
