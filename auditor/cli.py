"""Command line: ``main(argv) -> int`` with exit codes 0 (gate passed), 1 (gate failed), 2 (could not audit).

Only the standard library is imported at start-up so ``auditor --help`` answers at once; each
command imports what it needs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from auditor import __version__

EXIT_PASS, EXIT_FAIL, EXIT_UNUSABLE = 0, 1, 2
SEVERITY_CHOICES = ("info", "low", "medium", "high", "critical")
DEFAULT_FORMATS = "json,pdf,sarif,junit"  # = auditor.formats.DEFAULT_FORMATS (kept literal: fast --help)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 as well; keep it to one line
        self.print_usage(sys.stderr)
        print(f"auditor: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_UNUSABLE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="auditor", description="AI risk and data-quality governance auditor: a pre-deployment gate.",
                epilog="exit codes: 0 gate passed, 1 gate failed, 2 could not audit")
    p.add_argument("--version", action="version", version=f"auditor {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="audit datasets and a model against a policy")
    run.add_argument("--config", type=Path, metavar="PATH",
                     help="settings file (default: ./audit.yaml when present); flags override it")
    run.add_argument("--policy", help="built-in policy name or YAML path (default: nist-ai-rmf)")
    run.add_argument("--train", type=Path, help="training set (.csv, .parquet, .jsonl, .npz)")
    run.add_argument("--test", type=Path, help="test set (same formats)")
    run.add_argument("--label", help="label column (default: the policy's, else label/target/class/y)")
    run.add_argument("--model", type=Path, help="TorchScript, torch.export .pt2, or state_dict file")
    run.add_argument("--model-factory", metavar="MODULE:FUNCTION",
                     help="builds the architecture for a state_dict model (imported from the working directory)")
    run.add_argument("--optimized", type=Path, metavar="PATH",
                     help="optimized (quantized, pruned, ...) version of --model to audit and compare with it "
                          "(same formats; a state_dict uses --model-factory too)")
    run.add_argument("--out", type=Path, help="output folder (default: ./audit-report)")
    run.add_argument("--format",
                     help=f"comma-separated output formats (default: {DEFAULT_FORMATS})")
    run.add_argument("--fail-on", choices=SEVERITY_CHOICES, help="lowest severity of a failed check that fails the gate")
    run.add_argument("--seed", type=int, help="random seed (default: the policy's)")
    run.add_argument("--exclude", action="append", default=[], metavar="COLUMN",
                     help="column the model does not use (repeatable)")
    run.add_argument("--sensitive", action="append", default=[], metavar="COLUMN",
                     help="sensitive attribute for the fairness checks (repeatable; an NPZ array name such as groups)")
    run.add_argument("--engine", choices=("pandas", "spark"),
                     help="pandas (default): datasets in memory; spark: datasets read and audited by Apache Spark "
                          "(needs the [spark] extra), model checks on a sample the policy sizes")
    run.add_argument("--quiet", action="store_true", help="no progress on stderr")
    run.add_argument("--waivers", type=Path, metavar="PATH", help="waiver file (YAML 'waivers: [...]'), beside the policy's")
    run.add_argument("--baseline", type=Path, metavar="PATH",
                     help="report.json (or its folder) of the last approved audit: regressions are reported and gated")
    run.add_argument("--baseline-cert", type=Path, metavar="PATH",
                     help="certificate or public key the baseline must be signed with (verified before use)")
    sign = run.add_argument_group(
        "signing", "reports are signed when a key is given (--sign-key, or PEM in $AUDITOR_SIGN_KEY); the key's "
        "passphrase comes from $AUDITOR_KEY_PASSPHRASE or --passphrase-file, never from the command line")
    sign.add_argument("--sign-key", type=Path, metavar="PATH", help="private key: PEM (PKCS#8) or PKCS#12 (.p12)")
    sign.add_argument("--sign-cert", type=Path, metavar="PATH",
                      help="the key's certificate, PEM (default: from the PKCS#12 file, or $AUDITOR_SIGN_CERT)")
    sign.add_argument("--passphrase-file", type=Path, metavar="PATH", help="file whose first line is the key's passphrase")
    sign.add_argument("--tsa-url", metavar="URL", help="RFC 3161 timestamp authority: PAdES B-T instead of B-B")
    sign.add_argument("--require-signature", action="store_true",
                      help="exit 2 (before auditing) when no signing key is configured")

    pol = sub.add_parser("policy", help="list, show or validate policies")
    pol_sub = pol.add_subparsers(dest="policy_command", metavar="ACTION", parser_class=_Parser)
    pol_sub.add_parser("list", help="built-in policies")
    show = pol_sub.add_parser("show", help="print a policy with its extends merged")
    show.add_argument("name", help="built-in name or path")
    val = pol_sub.add_parser("validate", help="validate policy files (exit 0 all valid, 2 on the first invalid)")
    val.add_argument("path", nargs="+", help="policy YAML path or built-in name")

    sub.add_parser("checks", help="registered checks and their control mappings")

    ver = sub.add_parser("verify", help="verify a signed report (exit 0 valid, 1 invalid or tampered, 2 unusable input)",
                         description="Checks the DSSE envelope (report.dsse.json) beside the report, every digest it "
                         "signs, and the PDF's PAdES signature. Without --cert or --key the report is checked against "
                         "the certificate it carries: that proves integrity, not who signed it.")
    ver.add_argument("path", type=Path, help="report.json, report.dsse.json or report.pdf")
    trust = ver.add_mutually_exclusive_group()
    trust.add_argument("--cert", type=Path, metavar="PATH", help="the signer's certificate (PEM or DER) to trust")
    trust.add_argument("--key", type=Path, metavar="PATH", help="the signer's public key (PEM or DER)")
    ver.add_argument("--tsa-cert", type=Path, metavar="PATH",
                     help="a timestamp authority certificate to trust (for reports signed with --tsa-url)")
    ver.add_argument("--quiet", action="store_true", help="print only the verdict")

    keygen = sub.add_parser("keygen", help="an encrypted signing key and a self-signed document-signing certificate",
                            description="Writes signing-key.pem (PKCS#8, encrypted with the passphrase from "
                            "$AUDITOR_KEY_PASSPHRASE or --passphrase-file), signing-cert.pem (self-signed, key usage "
                            "digitalSignature + nonRepudiation) and signing-pub.pem into DIR.")
    keygen.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the key pair")
    keygen.add_argument("--passphrase-file", type=Path, metavar="PATH", help="file whose first line is the passphrase")
    keygen.add_argument("--name", default="auditor report signer", help="certificate common name")
    keygen.add_argument("--org", help="certificate organisation")
    keygen.add_argument("--days", type=int, default=730, help="validity in days (default: 730)")
    keygen.add_argument("--algorithm", choices=("ecdsa-p256", "ed25519"), default="ecdsa-p256",
                        help="key algorithm (default: ecdsa-p256)")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair in DIR")

    demo = sub.add_parser("demo", help="build the bundled example with planted problems and audit it")
    demo.add_argument("--out", type=Path, default=Path("audit-demo"), help="output folder (default: ./audit-demo)")
    demo.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_UNUSABLE
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # torch's C++ warnings (e.g. loading an int8 TorchScript model) bypass Python's warning filters and would
    # print on stderr; read when torch is first imported, which the commands do lazily after this point
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    _one_line_logging()
    from auditor.errors import AuditorError

    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "policy":
            if args.policy_command is None:
                parser.parse_args(["policy", "--help"])
            return cmd_policy(args)
        if args.command == "checks":
            return cmd_checks()
        if args.command == "verify":
            return cmd_verify(args)
        if args.command == "keygen":
            return cmd_keygen(args)
        if args.command == "demo":
            from auditor.demo import run_demo

            return run_demo(args.out, seed=args.seed)
    except AuditorError as e:
        print(f"auditor: error: {e.diagnostic()}", file=sys.stderr)
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        print("auditor: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug of ours: still one line and exit 2, unless debugging
        if os.environ.get("AUDITOR_DEBUG"):
            raise
        problem = " ".join(str(e).split())[:300]
        print(f"auditor: internal error: {type(e).__name__}: {problem} (set AUDITOR_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return EXIT_UNUSABLE
    return EXIT_UNUSABLE


class _OneLine(logging.Formatter):
    """Library log records as one line on stderr: no tracebacks (a check's failure is in the report)."""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return " ".join(super().format(record).split())


def _one_line_logging() -> None:
    """Warnings from libraries as one line each, as Python's last-resort handler would print them but without
    tracebacks; py4j's (the Spark gateway's socket closing when the JVM dies) are dropped: the checks that
    failed say why."""
    root = logging.getLogger()
    if root.handlers:  # an embedding application configured logging
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_OneLine("%(name)s: %(levelname)s: %(message)s"))
    handler.addFilter(lambda r: "py4j" not in r.name and f"{os.sep}py4j{os.sep}" not in r.pathname)
    root.addHandler(handler)


def cmd_run(args: argparse.Namespace) -> int:
    from auditor import policy as policy_mod
    from auditor.errors import AuditorError

    from auditor import config
    from auditor.output import parse_formats, prepare_out_dir, write_report

    config.apply(args, args.config)
    args.out = args.out if args.out is not None else Path("audit-report")
    formats = parse_formats(args.format if args.format is not None else DEFAULT_FORMATS)
    policy = policy_mod.load(args.policy)
    if args.train is None and args.test is None and args.model is None:
        raise AuditorError("nothing to audit: give --train, --test and/or --model")
    identity = load_signer(args)

    from auditor.progress import ConsoleProgress

    progress = ConsoleProgress(quiet=args.quiet)
    ctx = load_inputs(args, policy, progress)
    load_governance(args, ctx)
    prepare_out_dir(args.out)
    from auditor.engine import audit

    with progress:
        report = audit(ctx, fail_on=args.fail_on)
    if identity is not None and not args.quiet:
        what = "PAdES B-T (timestamped)" if args.tsa_url else "PAdES B-B"
        print(f"signing as {identity.common_name} ({identity.algorithm}, keyid {identity.keyid[:16]}...): "
              f"{what} + DSSE envelope", file=sys.stderr)
    written = write_report(report, args.out, formats, identity, tsa_url=args.tsa_url)
    _print_outcome(report, written)
    if identity is None:
        print("auditor: warning: reports written UNSIGNED (no signing key: give --sign-key and --sign-cert, or set "
              "$AUDITOR_SIGN_KEY); --require-signature makes this an error", file=sys.stderr)
    return EXIT_PASS if report.passed else EXIT_FAIL


def load_governance(args: argparse.Namespace, ctx) -> None:
    """Waivers from --waivers and the --baseline report (its signature checked when a cert is given)."""
    from auditor import baseline, policy as policy_mod
    from auditor.errors import AuditorError

    if args.waivers is not None:
        waivers, digest = policy_mod.load_waivers(args.waivers)
        ctx.extra_waivers = waivers
        ctx.waiver_sources = ((str(args.waivers), digest),)
    if args.baseline is None:
        if args.baseline_cert is not None:
            raise AuditorError("--baseline-cert needs --baseline")
        return
    previous, digest = baseline.load(args.baseline)
    path = args.baseline / "report.json" if args.baseline.is_dir() else args.baseline
    if args.baseline_cert is not None:
        from auditor.signing import verify

        try:
            is_cert = b"BEGIN CERTIFICATE" in args.baseline_cert.read_bytes()
        except OSError as e:
            raise AuditorError(f"cannot read: {e.strerror or e}", args.baseline_cert) from None
        result = verify(path, cert=args.baseline_cert) if is_cert else verify(path, key=args.baseline_cert)
        if not result.valid:
            reason = (result.failures or ["not signed"])[0]
            raise AuditorError(f"baseline signature does not verify: {reason}", path)
    ctx.baseline = (previous, str(path), digest)


def load_signer(args: argparse.Namespace):
    """The signing identity from the options or the environment, or None; exit 2 when it is unusable."""
    from auditor.errors import AuditorError
    from auditor.signing import ENV_KEY, load_identity

    identity = load_identity(args.sign_key, args.sign_cert, args.passphrase_file)
    if identity is None:
        if args.require_signature:
            raise AuditorError(f"--require-signature: no signing key (give --sign-key or set ${ENV_KEY})")
        if args.tsa_url:
            raise AuditorError("--tsa-url needs a signing key (--sign-key)")
    return identity


def cmd_verify(args: argparse.Namespace) -> int:
    from auditor.signing import verify

    result = verify(args.path, cert=args.cert, key=args.key, tsa_cert=args.tsa_cert)
    if not args.quiet:
        for status, text in result.lines:
            print(f"{status:<5} {text}")
    if result.valid:
        print(f"VALID: {args.path}")
        return EXIT_PASS
    reasons = result.failures or ["nothing could be verified"]
    print(f"INVALID: {args.path}: {reasons[0]}" + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""))
    return EXIT_FAIL


def cmd_keygen(args: argparse.Namespace) -> int:
    from auditor.errors import AuditorError
    from auditor.signing import ENV_PASSPHRASE, keygen, read_passphrase

    passphrase = read_passphrase(args.passphrase_file)
    if passphrase is None:
        raise AuditorError(f"no passphrase: set ${ENV_PASSPHRASE} or give --passphrase-file (the key is always encrypted)")
    pair = keygen(args.out, passphrase, name=args.name, organization=args.org, days=args.days,
                  algorithm=args.algorithm, force=args.force)
    print(f"wrote {pair.key} (private key, encrypted; keep it secret)")
    print(f"wrote {pair.cert} (self-signed certificate: for --sign-cert, and for verifiers)")
    print(f"wrote {pair.public} (public key)")
    print(f"keyid {pair.keyid} ({pair.algorithm}, valid until {pair.not_after:%Y-%m-%d})")
    return EXIT_PASS


def load_inputs(args: argparse.Namespace, policy, progress):
    """Datasets and model from the command line (and policy defaults) into an AuditContext."""
    from auditor.engine import AuditContext
    from auditor.errors import AuditorError, InputError
    from auditor.inputs import load_dataset
    from auditor.models import load_model

    if args.optimized is not None and args.model is None:
        raise AuditorError("--optimized needs --model: the original model to compare the optimized one with")
    label = args.label or policy.label
    exclude = list(dict.fromkeys([*policy.exclude, *args.exclude]))
    train = test = model = optimized = None
    engine = args.engine or "pandas"
    if engine == "spark":
        from auditor import spark

        spark.require_pyspark()
        settings = getattr(args, "spark_settings", None) or spark.SparkSettings()

        def load_dataset(path, name, label, exclude):  # noqa: F811 (same signature, read by Spark)
            return spark.load_dataset(path, name, label=label, exclude=exclude, settings=settings)

        with progress.status(f"starting Spark ({settings.master}, driver memory {settings.driver_memory})"):
            spark.session(settings)
    if args.train is not None:
        with progress.status(f"reading {args.train}"):
            train = load_dataset(args.train, "train", label=label, exclude=exclude)
        label = label or train.label
    if args.test is not None:
        with progress.status(f"reading {args.test}"):
            test = load_dataset(args.test, "test", label=label, exclude=exclude)
    if args.model is not None:
        with progress.status(f"loading {args.model}"):
            model = load_model(args.model, factory=args.model_factory)
        if args.optimized is not None:
            with progress.status(f"loading {args.optimized}"):
                optimized = load_model(args.optimized, factory=args.model_factory)
        for ds in (train, test):
            if ds is not None:
                ds.check_model_features()
    sensitive = tuple(dict.fromkeys([*policy.sensitive, *args.sensitive]))
    for name in sensitive:
        for ds in (train, test):
            if ds is not None and not ds.has_attribute(name):
                what = "array" if ds.is_array else "column"
                raise InputError(f"sensitive {what} {name!r} not found", ds.path)
    seed = args.seed if args.seed is not None else policy.seed
    return AuditContext(policy=policy, seed=seed, train=train, test=test, model=model, optimized=optimized,
                        progress=progress, sensitive=sensitive, engine=engine)


def _print_outcome(report, written) -> None:
    from rich.console import Console

    from auditor.formats.summary import print_summary

    console = Console(highlight=False, soft_wrap=False, width=max(100, Console().width))
    print_summary(report, console)
    for path in written:
        console.print(f"wrote {path}")


def cmd_policy(args: argparse.Namespace) -> int:
    from auditor import policy as policy_mod

    if args.policy_command == "list":
        for name, version, description in policy_mod.describe_builtins():
            default = " (default)" if name == policy_mod.DEFAULT_POLICY else ""
            print(f"{name}{default}\tv{version}\t{description}")
        return EXIT_PASS
    if args.policy_command == "show":
        import yaml

        pol = policy_mod.load(args.name)
        doc = dict(pol.document)
        doc.pop("extends", None) if doc.get("extends") is None else None
        print(f"# {pol.path} (sha256 {pol.sha256})")
        print(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), end="")
        return EXIT_PASS
    for ref in args.path:
        pol = policy_mod.load(Path(ref) if Path(ref).exists() else ref)
        enabled = len(pol.enabled_checks())
        print(f"{ref}: valid (policy {pol.name} v{pol.version}, {enabled} checks enabled, fail on {pol.fail_on})")
    return EXIT_PASS


def cmd_checks() -> int:
    from rich.console import Console
    from rich.table import Table

    from auditor.registry import all_checks

    table = Table(title="Registered checks")
    table.add_column("id", no_wrap=True)
    for col in ("family", "needs", "severity", "on spark", "controls"):
        table.add_column(col, overflow="fold")
    for check in all_checks().values():
        table.add_row(check.id, check.family, ", ".join(check.requires) or "-", check.default_severity,
                      "whole data" if check.spark_native else "sample", "\n".join(check.controls))
    Console(width=max(120, Console().width)).print(table)
    return EXIT_PASS


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
