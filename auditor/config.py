"""``audit.yaml``: the run's settings in a file (datasets, model, policy, outputs, signing), so a CI job
needs no long command line. Flags override it; relative paths are relative to the file.

```yaml
policy: policies/team.yaml
train: data/train.parquet
test: data/test.parquet
label: outcome
model: models/model.pt2
exclude: [customer_id]
sensitive: [sex]
out: audit-report
format: [json, pdf, sarif, junit]
fail_on: high
waivers: waivers.yaml
baseline: approved/report.json
sign: {key: keys/signing-key.pem, cert: keys/signing-cert.pem, require: true}
engine: spark                      # or pandas (the default)
spark: {master: "local[2]", driver_memory: 2g, conf: {spark.local.dir: /scratch}}
```
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from auditor.spark import SparkSettings

DEFAULT_NAME = "audit.yaml"


class SignConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str | None = None
    cert: str | None = None
    passphrase_file: str | None = None
    tsa_url: str | None = None
    require: bool = False


class AuditConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: str | None = None
    train: str | None = None
    test: str | None = None
    label: str | None = None
    model: str | None = None
    model_factory: str | None = None
    exclude: list[str] = Field(default_factory=list)
    sensitive: list[str] = Field(default_factory=list)
    out: str | None = None
    format: list[str] | str | None = None
    fail_on: Literal["info", "low", "medium", "high", "critical"] | None = None
    seed: int | None = None
    waivers: str | None = None
    baseline: str | None = None
    baseline_cert: str | None = None
    sign: SignConfig = Field(default_factory=SignConfig)
    engine: Literal["pandas", "spark"] | None = None
    spark: SparkSettings | None = None


PATH_FIELDS = ("train", "test", "model", "out", "waivers", "baseline", "baseline_cert")


def load(path: Path) -> AuditConfig:
    from auditor.errors import AuditorError
    from auditor.policy import _raise_validation, _read_yaml

    if not path.is_file():
        raise AuditorError("configuration file not found", path)
    src = _read_yaml(path)
    try:
        return AuditConfig.model_validate(src.data)
    except ValidationError as e:
        _raise_validation([src], e)
        raise  # unreachable: _raise_validation raises


def apply(args: argparse.Namespace, explicit: Path | None) -> Path | None:
    """Fill the run's options the command line left unset from ``--config`` (or ./audit.yaml)."""
    path = explicit if explicit is not None else (Path(DEFAULT_NAME) if Path(DEFAULT_NAME).is_file() else None)
    args.spark_settings = None
    if path is None:
        return None
    cfg = load(path)
    args.spark_settings = cfg.spark
    base = path.parent

    def rel(value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value)
        return p if p.is_absolute() else base / p

    for name in PATH_FIELDS:
        if getattr(args, name, None) is None and getattr(cfg, name) is not None:
            setattr(args, name, rel(getattr(cfg, name)))
    if args.policy is None and cfg.policy is not None:
        looks_like_path = cfg.policy.endswith((".yaml", ".yml")) or "/" in cfg.policy
        args.policy = str(rel(cfg.policy)) if looks_like_path else cfg.policy
    for name in ("label", "model_factory", "fail_on", "seed", "engine"):
        if getattr(args, name) is None and getattr(cfg, name) is not None:
            setattr(args, name, getattr(cfg, name))
    if not args.exclude:
        args.exclude = list(cfg.exclude)
    if not args.sensitive:
        args.sensitive = list(cfg.sensitive)
    if args.format is None and cfg.format is not None:
        args.format = cfg.format if isinstance(cfg.format, str) else ",".join(cfg.format)
    sign = cfg.sign
    if args.sign_key is None and sign.key is not None:
        args.sign_key = rel(sign.key)
    if args.sign_cert is None and sign.cert is not None:
        args.sign_cert = rel(sign.cert)
    if args.passphrase_file is None and sign.passphrase_file is not None:
        args.passphrase_file = rel(sign.passphrase_file)
    if args.tsa_url is None and sign.tsa_url is not None:
        args.tsa_url = sign.tsa_url
    args.require_signature = args.require_signature or sign.require
    return path
