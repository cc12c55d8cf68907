"""The bundled demo: planted problems are written, audited and found."""

from __future__ import annotations

import json

import jsonschema

from auditor.cli import main
from auditor.formats.json_report import schema


def test_demo_builds_audits_and_finds_the_planted_problems(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    planted = json.loads((out / "data" / "planted.json").read_text())
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, schema())
    assert report["summary"]["gate"] == "fail"
    checks = {c["id"]: c for c in report["checks"]}
    assert all(c["status"] != "error" for c in checks.values()), [c.get("reason") for c in checks.values()]

    flagged = {r for f in checks["data.label_issues"]["findings"] for r in f["rows"]}
    mislabelled = set(planted["mislabelled_rows"])
    assert len(flagged & mislabelled) / len(mislabelled) >= 0.85
    assert len(flagged & mislabelled) / len(flagged) >= 0.75

    dups = {r for f in checks["data.duplicates"]["findings"] if "repeat" in f["message"] for r in f["rows"]}
    assert dups == set(planted["duplicate_rows"])
    assert "planted problems" in printed and "data.label_issues found" in printed
    assert {s["kind"] for s in report["subjects"]} == {"dataset", "model", "policy"}

    # optimized variants: the supplied int8 TorchScript and the two the demo policy asks the auditor to make
    variants = {v["name"]: v for v in checks["optimization.comparison"]["metrics"]["variants"]}
    assert set(variants) == {"optimized", "int8_weight_only", "prune_unstructured@0.5"}
    assert variants["optimized"]["int8"] is True and variants["optimized"]["origin"] == "supplied"
    assert variants["prune_unstructured@0.5"]["weight_sparsity"] >= 0.45
    adversarial = checks["robustness.adversarial"]["metrics"]["models"]
    assert set(adversarial) == {"original", *variants}
    assert "optimization.comparison:" in printed and "robustness.adversarial:" in printed
    # the second example: a pixel-patch backdoor in an image CNN, audited for model security
    bd_report = json.loads((out / "backdoor" / "report.json").read_text())
    bd_planted = json.loads((out / "backdoor" / "data" / "planted.json").read_text())
    jsonschema.validate(bd_report, schema())
    bd = {c["id"]: c for c in bd_report["checks"]}
    assert bd["backdoor.scan"]["status"] == "fail"
    assert bd["backdoor.scan"]["metrics"]["suspected_target_class"] == bd_planted["target_class"]
    rows = {r for f in bd["poisoning.scan"]["findings"] for r in f["rows"]}
    poisoned = set(bd_planted["poisoned_rows"])
    assert len(rows & poisoned) / len(poisoned) >= 0.8 and len(rows & poisoned) / len(rows) >= 0.8
    assert "backdoor.scan fail, suspected target class 0" in printed and "poisoning.scan found" in printed
