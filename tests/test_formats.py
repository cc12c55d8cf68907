"""The report formats: SARIF 2.1.0 (schema-valid), JUnit XML (junitparser), and the PDF (text and layout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from auditor.formats import DEFAULT_FORMATS, FORMATS
from auditor.report import Report
from tests._reports import LONG_FEATURE, SHARED_SCHEMAS, built_report, need_tool, pdf_text, run_cli


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Report:
    return built_report(tmp_path_factory.mktemp("formats"))


@pytest.fixture(scope="module")
def rendered(report, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("rendered")
    files = {}
    for name, (file_name, render) in FORMATS.items():
        files[name] = out / file_name
        files[name].write_bytes(render(report))
    return files


def test_registry_names_and_defaults():
    assert {name: f for name, (f, _) in FORMATS.items()} == {
        "json": "report.json", "pdf": "report.pdf", "sarif": "report.sarif", "junit": "report.junit.xml"}
    assert set(DEFAULT_FORMATS) == set(FORMATS)


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from auditor.cli import build_parser; build_parser(); "
            "import auditor.formats, auditor.signing, auditor.output; "
            "heavy = [m for m in ('reportlab', 'pyhanko', 'cryptography', 'torch', 'pandas') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


# ----------------------------------------------------------------------------- SARIF


def _sarif_schema() -> dict:
    path = SHARED_SCHEMAS / "sarif-schema-2.1.0.json"
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing (CI lays ../shared beside the project)")
        pytest.skip(f"{path} not present (../shared/schemas beside the project)")
    return json.loads(path.read_text("utf-8"))


def test_sarif_validates_against_the_official_schema(rendered):
    import jsonschema

    doc = json.loads(rendered["sarif"].read_bytes())
    schema = _sarif_schema()
    assert schema.get("$schema", "").startswith("http://json-schema.org/draft-04")
    jsonschema.Draft4Validator(schema).validate(doc)
    # and the validator does reject a broken document (the test can fail)
    broken = json.loads(rendered["sarif"].read_bytes())
    broken["runs"][0]["results"][0]["level"] = "catastrophic"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(broken)


def test_sarif_rules_results_and_anchors(report, rendered):
    doc = json.loads(rendered["sarif"].read_bytes())
    assert doc["version"] == "2.1.0"
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [c.id for c in report.checks]
    for rule in rules:
        assert rule["help"]["text"] and rule["shortDescription"]["text"]
        assert 0.0 < float(rule["properties"]["security-severity"]) <= 10.0
    by_rule = {}
    for res in run["results"]:
        by_rule.setdefault(res["ruleId"], []).append(res)
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
    statuses = {c.id: c.status for c in report.checks}
    assert set(by_rule) == {cid for cid, s in statuses.items() if s in ("fail", "warn", "error")}
    # one result per finding, anchored at the dataset's first flagged row (CSV: header is line 1)
    dups = by_rule["data.duplicates"]
    assert len(dups) == 2
    loc = dups[0]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"].endswith("train.csv")
    assert loc["region"]["startLine"] == 40 + 2
    assert dups[0]["level"] == "error" and dups[0]["properties"]["security-severity"] == "8.0"
    # findings without a dataset point at the line of the policy that configures the check
    policy_path = Path(report.policy["path"])
    lines = policy_path.read_text().splitlines()
    for res in by_rule["data.drift"]:
        loc = res["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"].endswith("policy.yaml")
        assert lines[loc["region"]["startLine"] - 1].strip().startswith("data.drift:")
        assert res["level"] == "warning"
    (err,) = by_rule["data.label_issues"]
    assert err["level"] == "error" and "simulated failure" in err["message"]["text"]
    assert all(res["partialFingerprints"] for res in run["results"])
    assert run["properties"]["gate"] == report.summary.gate == "fail"


# ----------------------------------------------------------------------------- JUnit


def test_junit_parses_with_junitparser(report, rendered):
    from junitparser import Error, Failure, JUnitXml, Skipped

    xml = JUnitXml.fromfile(str(rendered["junit"]))
    suites = list(xml)
    assert len(suites) == 1
    suite = suites[0]
    cases = {case.name: case for case in suite}
    assert list(cases) == [c.id for c in report.checks]
    counts = report.summary.counts
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (
        len(report.checks), counts["fail"], counts["error"], counts["skipped"])
    for c in report.checks:
        kinds = {type(r) for r in cases[c.id].result}
        expected = {"fail": {Failure}, "error": {Error}, "skipped": {Skipped}}.get(c.status, set())
        assert kinds == expected, c.id
        assert cases[c.id].classname == f"auditor.{c.family}"
    (err,) = cases["data.label_issues"].result
    assert "Traceback" in err.text and "simulated failure" in err.message


# ----------------------------------------------------------------------------- PDF


def test_pdf_content(report, rendered):
    text = pdf_text(rendered["pdf"])
    flat = " ".join(text.split())
    assert "GATE: FAIL" in flat
    assert "tiny-policy version 2.3" in flat
    assert "2026-01-02T03:04:09+00:00" in flat
    assert "UNSIGNED" in flat  # no signer in this report
    for c in report.checks:
        assert c.id in flat
    # coverage matrix: a catalog control that no check maps to, and one that is covered
    assert "GOVERN 1.1" in flat and "attestation required" in flat
    assert "A.7.5" in flat
    # subjects with their digests (possibly wrapped inside the cell)
    raw = " ".join(pdf_text(rendered["pdf"], layout=False).split())
    squeezed = raw.replace(" ", "")
    for s in report.subjects:
        assert s.sha256 in squeezed
    # findings show their counts and first rows; the drift chart names the worst features
    assert "train 400 1000, 1001, 1002" in raw
    assert "1011 ... (+388 more)" in raw
    pages = flat.count("page ")
    assert "page 1 of" in flat and pages >= 5


def _pgm_pages(pdf: Path, folder: Path, dpi: int = 40) -> list[np.ndarray]:
    subprocess.run([need_tool("pdftoppm"), "-r", str(dpi), "-gray", str(pdf), str(folder / "pg")], check=True)
    pages = []
    for path in sorted(folder.glob("pg*.pgm")):
        data = path.read_bytes()
        parts = data.split(maxsplit=4)  # P5 width height maxval pixels
        assert parts[0] == b"P5"
        w, h = int(parts[1]), int(parts[2])
        pages.append(np.frombuffer(parts[4][: w * h], dtype=np.uint8).reshape(h, w))
    return pages


def test_pdf_nothing_runs_into_the_margins(rendered, tmp_path):
    """Long unbreakable names, paths and messages wrap inside their cells: the side margins stay blank."""
    pages = _pgm_pages(rendered["pdf"], tmp_path)
    assert len(pages) >= 5
    for i, page in enumerate(pages, start=1):
        h, w = page.shape
        strip = int(w * 12 / 210)  # 12 mm of the 18 mm side margins, A4 is 210 mm wide
        left, right = page[:, :strip], page[:, w - strip:]
        assert left.min() > 200 and right.min() > 200, f"page {i}: something is drawn in the side margin"


def test_pdf_margin_check_can_fail(report, tmp_path, monkeypatch):
    """The margin check above does detect content that runs off the frame."""
    from reportlab.platypus import Table

    from auditor.formats import pdf_report

    original = pdf_report._Builder.table

    def too_wide(self, rows, widths, **kw):
        t = original(self, rows, widths, **kw)
        return Table([["X" * 400]], colWidths=[self.width * 1.3]) if len(rows) > 3 else t

    monkeypatch.setattr(pdf_report._Builder, "table", too_wide)
    pdf = tmp_path / "wide.pdf"
    pdf.write_bytes(pdf_report.render(report))
    pages = _pgm_pages(pdf, tmp_path)
    assert any(p[:, p.shape[1] - int(p.shape[1] * 12 / 210):].min() < 200 for p in pages)


def test_pdf_from_a_real_run_names_the_drifted_feature(tmp_path):
    code = run_cli(tmp_path / "in", tmp_path / "out", None, "--format", "pdf,json")
    assert code in (0, 1)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    drift = next(c for c in report["checks"] if c["id"] == "data.drift")
    assert "age" in drift["metrics"]["drifted"]
    text = " ".join(pdf_text(tmp_path / "out" / "report.pdf").split())
    assert "Effect size per feature" in text and "age" in text
    assert LONG_FEATURE[:20] in text
    assert not (tmp_path / "out" / "report.sarif").exists()  # only the formats asked for
