"""The CI integration files are well-formed and call commands the CLI really has."""

from __future__ import annotations

import shlex

import yaml

from auditor.cli import build_parser, main
from tests.conftest import ROOT


def test_composite_action_uploads_even_when_the_gate_fails():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    names = [s["name"] for s in steps]
    assert names.index("Upload SARIF") < names.index("Gate") and names.index("Upload reports") < names.index("Gate")
    for step in steps:
        if step["name"].startswith("Upload"):
            assert step["if"].startswith("always()")
    audit = next(s for s in steps if s["name"] == "Audit")
    assert "${{" not in audit["run"], "inputs must reach the script through env, not interpolation"


def test_pre_commit_hooks_run_real_commands(tmp_path):
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    parser = build_parser()
    for hook in hooks:
        argv = shlex.split(hook["entry"])
        assert argv[0] == "auditor"
        parser.parse_args(argv[1:] + (["nist-ai-rmf"] if hook.get("pass_filenames", True) else []))
    # the validate hook is given several files at once
    assert main(["policy", "validate", "nist-ai-rmf", str(ROOT / "policies" / "minimal.yaml")]) == 0


def test_example_configs_are_valid(tmp_path):
    from auditor import config, policy

    config.load(ROOT / "examples" / "audit.yaml")
    waivers, _ = policy.load_waivers(ROOT / "examples" / "waivers.yaml")
    assert waivers[0].check == "data.duplicates"
    for name in ("github-workflow.yml", "gitlab-ci.yml"):
        assert yaml.safe_load((ROOT / "examples" / "ci" / name).read_text())
