from __future__ import annotations

import pytest

from auditor import policy as policy_mod
from auditor.cli import main
from auditor.errors import PolicyError
from auditor.registry import all_checks
from auditor.severity import SEVERITIES
from tests.conftest import write_policy


def test_default_policy_maps_every_check_to_nist_and_iso():
    pol = policy_mod.load(None)
    assert pol.name == "nist-ai-rmf"
    assert set(pol.checks) == set(all_checks()), "the default policy configures every registered check"
    catalog = pol.frameworks
    for check in pol.checks.values():
        frameworks = {c.split(":", 1)[0] for c in check.controls}
        assert {"nist-ai-rmf", "iso-42001"} <= frameworks, check.id
        for control in check.controls:
            framework, cid = control.split(":", 1)
            assert cid in catalog[framework], f"{control} has no title in the policy's catalog"


def test_severity_literal_matches_vocabulary():
    from typing import get_args

    assert get_args(policy_mod.Severity) == SEVERITIES


def test_extends_overrides_and_inherits(tmp_path):
    p = write_policy(tmp_path / "p.yaml", """
name: strict
extends: nist-ai-rmf
fail_on: medium
checks:
  data.drift:
    severity: high
    params: {alpha: 0.01}
  data.duplicates:
    enabled: false
""")
    pol = policy_mod.load(p)
    assert pol.name == "strict" and pol.fail_on == "medium"
    assert pol.checks["data.drift"].severity == "high"
    assert pol.checks["data.drift"].params.alpha == 0.01
    assert pol.checks["data.drift"].params.min_effect == 0.1  # inherited from the base
    assert not pol.checks["data.duplicates"].enabled
    assert pol.checks["data.label_issues"].enabled  # inherited
    assert [s[0] for s in pol.sources][-1] == str(p) and len(pol.sources) == 2


@pytest.mark.parametrize(
    "body, line, fragment",
    [
        ("name: x\nchecks:\n  data.nope: {}\n", 3, "checks.data.nope: unknown check id"),
        ("name: x\nchecks:\n  data.drift:\n    params:\n      alpha: lots\n", 5, "checks.data.drift.params.alpha"),
        ("name: x\ncolour: red\n", 2, "colour: unknown field"),
        ("name: x\nchecks:\n  data.drift:\n    severty: high\n", 4, "checks.data.drift.severty: unknown field"),
        ("name: x\nfail_on: severe\n", 2, "fail_on"),
        ("name: x\nchecks:\n  data.drift:\n    params: {alpha: 0.1, alpha: 0.2}\n", 4, "duplicate key"),
        ("name: x\nchecks: [\n", 3, "invalid YAML"),
        ("name: x\nchecks:\n  data.validation:\n    params:\n      expectations:\n        train:\n"
         "          - expect_the_unexpected: {column: a}\n", 7, "expect_the_unexpected"),
        ("name: x\nchecks:\n  data.validation:\n    params:\n      expectations:\n        train:\n"
         "          - expect_column_values_to_be_between: {colum: a, min_value: 0}\n", 7, "invalid arguments"),
    ],
)
def test_policy_errors_name_file_line_and_field(tmp_path, capsys, body, line, fragment):
    p = write_policy(tmp_path / "bad.yaml", body)
    with pytest.raises(PolicyError) as e:
        policy_mod.load(p)
    assert e.value.path == str(p)
    assert e.value.line == line, e.value.diagnostic()
    assert fragment in e.value.problem
    assert main(["policy", "validate", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"auditor: error: {p}:{line}:")


def test_error_in_inherited_field_points_to_the_child(tmp_path):
    write_policy(tmp_path / "base.yaml", "name: base\nchecks:\n  data.drift: {}\n")
    child = write_policy(tmp_path / "child.yaml", "name: c\nextends: base.yaml\nchecks:\n  data.drift:\n    params: {correction: magic}\n")
    with pytest.raises(PolicyError) as e:
        policy_mod.load(child)
    assert e.value.path == str(child) and e.value.line == 5


def test_extends_cycle_and_missing_base(tmp_path):
    write_policy(tmp_path / "a.yaml", "name: a\nextends: b.yaml\n")
    write_policy(tmp_path / "b.yaml", "name: b\nextends: a.yaml\n")
    with pytest.raises(PolicyError, match="cycle"):
        policy_mod.load(tmp_path / "a.yaml")
    missing = write_policy(tmp_path / "m.yaml", "name: m\nextends: gone.yaml\n")
    with pytest.raises(PolicyError, match="not found") as e:
        policy_mod.load(missing)
    assert e.value.line == 2
    with pytest.raises(PolicyError, match="no built-in policy"):
        policy_mod.load("no-such-policy")


def test_policy_cli_list_show_validate(capsys):
    assert main(["policy", "list"]) == 0
    assert "nist-ai-rmf (default)" in capsys.readouterr().out
    assert main(["policy", "show", "nist-ai-rmf"]) == 0
    out = capsys.readouterr().out
    assert "data.label_issues" in out and "MEASURE 2.7" in out
    assert main(["policy", "validate", "nist-ai-rmf"]) == 0
    assert "valid" in capsys.readouterr().out


def test_checks_command_lists_registry(capsys):
    assert main(["checks"]) == 0
    out = capsys.readouterr().out
    for check_id in all_checks():
        assert check_id in out
