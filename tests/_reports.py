"""Small reports for the format and signing tests: a Report built directly, and tiny real CLI runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from auditor.hashing import sha256_file
from auditor import coverage
from auditor.report import CheckResult, Finding, Report, Subject, decide_gate

FRAMEWORKS = {"nist-ai-rmf": {"MAP 4.1": "Risks of components are mapped",
                              "MEASURE 2.5": "Validity and reliability are shown",
                              "MEASURE 2.7": "Security and resilience are evaluated",
                              "MEASURE 2.11": "Fairness and bias are evaluated",
                              "GOVERN 1.1": "Legal and regulatory requirements are understood"},
              "iso-42001": {"A.7.4": "Quality of data for AI systems", "A.7.5": "Data provenance"}}

ROOT = Path(__file__).resolve().parent.parent
SHARED_SCHEMAS = ROOT.parent / "shared" / "schemas"
PASSPHRASE = "correct horse battery staple 7"

LONG_FEATURE = "customer_lifetime_value_estimate_after_the_second_renewal_window_in_local_currency_units"
LONG_PATH_PART = "a_very_deeply_nested_folder_name_that_keeps_going_and_going" * 2

CHEAP_POLICY = """\
name: tiny-policy
version: "2.3"
extends: nist-ai-rmf
fail_on: high
checks:
  data.validation: {enabled: false}
  data.label_issues: {enabled: false}
  data.duplicates: {severity: high}
"""


def tiny_tables(folder: Path) -> tuple[Path, Path]:
    """train.csv with planted duplicates (rows 40..47) and a shifted feature in test.csv."""
    rng = np.random.default_rng(7)
    n = 120
    train = pd.DataFrame({
        "age": rng.normal(40, 8, n).round(1),
        LONG_FEATURE: rng.normal(0, 1, n).round(3),
        "segment": rng.choice(["a", "b", "c"], n),
        "label": rng.integers(0, 2, n),
    })
    train.iloc[40:48] = train.iloc[0:8].to_numpy()
    test = pd.DataFrame({
        "age": rng.normal(55, 8, 80).round(1),
        LONG_FEATURE: rng.normal(0, 1, 80).round(3),
        "segment": rng.choice(["a", "b", "c"], 80),
        "label": rng.integers(0, 2, 80),
    })
    folder.mkdir(parents=True, exist_ok=True)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    return folder / "train.csv", folder / "test.csv"


def make_keys(folder: Path, algorithm: str = "ecdsa-p256", name: str = "Test Signer") -> dict[str, Path]:
    from auditor.signing import keygen

    pair = keygen(folder, PASSPHRASE.encode(), name=name, organization="Tests", days=30, algorithm=algorithm)
    passfile = folder / "pass.txt"
    passfile.write_text(PASSPHRASE + "\n")
    return {"key": pair.key, "cert": pair.cert, "public": pair.public, "pass": passfile}


def run_cli(folder: Path, out: Path, keys: dict[str, Path] | None, *extra: str) -> int:
    from auditor.cli import main

    train, test = folder / "train.csv", folder / "test.csv"
    if not train.exists():
        tiny_tables(folder)
    policy = folder / "policy.yaml"
    if not policy.exists():
        policy.write_text(CHEAP_POLICY)
    argv = ["run", "--policy", str(policy), "--train", str(train), "--test", str(test), "--out", str(out), "--quiet",
            *extra]
    if keys is not None:
        argv += ["--sign-key", str(keys["key"]), "--sign-cert", str(keys["cert"]), "--passphrase-file", str(keys["pass"])]
    return main(argv)


def built_report(folder: Path) -> Report:
    """A Report with every status, long unbreakable text, many rows and a drift chart: built directly."""
    train, test = tiny_tables(folder)
    policy = folder / "policy.yaml"
    policy.write_text(CHEAP_POLICY + "  data.drift:\n    severity: medium\n")
    deep = folder / LONG_PATH_PART
    deep.mkdir(exist_ok=True)
    model = deep / "model.pt"
    model.write_bytes(b"not really a model, just bytes to hash")
    per_feature = {
        f"{LONG_FEATURE}_{i:02d}" if i % 7 == 0 else f"f{i:02d}": {
            "type": "numeric", "test": "ks", "statistic": 0.02 * i, "effect": 0.02 * i,
            "p_value": 10.0 ** -i, "p_adjusted": min(1.0, 10.0 ** -i * 30), "drifted": 0.02 * i >= 0.1 and i > 4,
        }
        for i in range(30)
    }
    checks = (
        CheckResult("provenance.integrity", "Input digests and safe model format", "provenance", "high", "pass",
                    None, {"sha256": {"train": sha256_file(train)}}, (), ("nist-ai-rmf:MAP 4.1", "iso-42001:A.7.5"), 0.01),
        CheckResult("data.duplicates", "Duplicate rows inside a dataset", "data", "high", "fail", None,
                    {"max_fraction": 0.01, "max_conflicting_groups": 0,
                     "train": {"rows": 120, "duplicate_rows": 8, "duplicate_fraction": 0.0667}},
                    (Finding("train: 8 of 120 rows (6.67%) repeat an earlier row", dataset="train",
                             rows=tuple(range(40, 48))),
                     Finding("train: " + "x" * 300 + " an unbreakable finding message", dataset="train",
                             rows=tuple(range(1000, 1400)))),
                    ("nist-ai-rmf:MEASURE 2.5", "iso-42001:A.7.4", "eu-ai-act:Art.10(3)"), 0.02),
        CheckResult("data.class_balance", "Label balance and train/test label shift", "data", "medium", "warn", None,
                    {"max_ratio": 10.0, "min_class_count": 5, "max_label_shift": 0.1,
                     "train": {"classes": 2, "counts": {"0": 60, "1": 60}},
                     "test": {"classes": 2, "counts": {"0": 30, "1": 50}}, "label_shift_tvd": 0.125},
                    (Finding("train and test label distributions differ by 0.125"),),
                    ("nist-ai-rmf:MEASURE 2.11", "eu-ai-act:Art.10(2)(f)"), 0.0),
        CheckResult("data.drift", "Train/test distribution shift per feature", "data", "medium", "fail", None,
                    {"alpha": 0.05, "correction": "bh", "min_effect": 0.1, "max_drifted_features": 0,
                     "features_tested": 30, "features_drifted": sum(v["drifted"] for v in per_feature.values()),
                     "drifted": [k for k, v in per_feature.items() if v["drifted"]], "per_feature": per_feature},
                    tuple(Finding(f"{k}: KS effect {v['effect']:.3f}", details=v) for k, v in per_feature.items()
                          if v["drifted"]),
                    ("nist-ai-rmf:MEASURE 2.5", "eu-ai-act:Art.10(4)"), 0.3),
        CheckResult("data.label_issues", "Likely mislabelled training rows", "data", "high", "error",
                    "RuntimeError: simulated failure " + "y" * 200, {}, (), ("nist-ai-rmf:MEASURE 2.7",), 0.1,
                    traceback="Traceback (most recent call last):\n  File \"checks/labels.py\", line 1, in run\n"
                              "    raise RuntimeError('" + "z" * 180 + "')\nRuntimeError: simulated failure"),
        CheckResult("data.validation", "Dataset validation (Great Expectations)", "data", "high", "skipped",
                    "needs a test set (--test)", {}, (), ("iso-42001:A.7.4",), 0.0),
    )
    summary = decide_gate(checks, "high")
    return Report(
        auditor={"name": "auditor", "version": "0.1.0"},
        run={"id": "run-0001", "started_at": "2026-01-02T03:04:05+00:00", "finished_at": "2026-01-02T03:04:09+00:00",
             "seed": 0, "argv": ["run", "--train", str(train)]},
        policy={"name": "tiny-policy", "version": "2.3", "sha256": sha256_file(policy), "path": str(policy),
                "fail_on": "high",
},
        subjects=(
            Subject("train", "dataset", str(train), sha256_file(train)),
            Subject("test", "dataset", str(test), sha256_file(test)),
            Subject("model", "model", str(model), sha256_file(model)),
            Subject("policy", "policy", str(policy), sha256_file(policy)),
        ),
        summary=summary,
        checks=checks,
        inputs={},
        coverage=coverage.build(FRAMEWORKS, checks, "nist-ai-rmf"),
        environment={"python": "3.11.7", "platform": "Linux", "packages": {"numpy": "2.4.0", "reportlab": "5.0"}},
    )


def need_tool(name: str) -> str:
    """The path of a poppler/qpdf tool; a clear skip only where it cannot be installed (not root)."""
    path = shutil.which(name)
    if path:
        return path
    if os.geteuid() == 0 or os.environ.get("CI"):
        pytest.fail(f"{name} is missing: `make test` installs poppler-utils and qpdf when run as root")
    pytest.skip(f"{name} not installed (apt-get install poppler-utils qpdf; `make test` does it as root)")


def pdf_text(pdf: Path, layout: bool = True) -> str:
    """The PDF's text: laid out as on the page, or (layout=False) in drawing order, cell by cell."""
    args = [need_tool("pdftotext"), "-layout" if layout else "-raw", str(pdf), "-"]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout
