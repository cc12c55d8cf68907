"""``auditor demo``: a bundled example with planted problems, audited end to end.

Builds a train/test split of scikit-learn's digits (8x8 images as 64 pixel columns), plants
mislabelled and duplicated training rows, and train/test leakage: test rows copied from training,
near-copies (two pixels off by one), writers shared by both sets and scans dated inside the training
period (``writer`` and ``scanned`` columns, which the model does not use). Trains a small PyTorch
classifier (saved as TorchScript), audits it all with the default policy (extended by ``policy.yaml``,
which names the id and time columns) into ``OUT/`` and reports how much of what was planted the
checks found. The gate is expected to fail: that is the point of the planted problems.

The reports are signed with a demo key generated into ``OUT/keys/`` (its passphrase is stored beside it
in ``demo-passphrase.txt``): a key for demonstration only, never for real reports.

It also ships optimized variants of the classifier: an int8 dynamically quantized copy saved as
TorchScript (``model-int8.pt``, passed with ``--optimized``) and a policy (``policy.yaml``, extending the
default) that asks the auditor to make two more itself: simulated int8 weight-only quantization and
50 % magnitude pruning. Each is audited as a model of its own and compared with the original.

A second example in ``OUT/backdoor/`` holds the digits as 1x8x8 images (NPZ) with a pixel-patch backdoor
planted in 8 % of the training rows and a small CNN trained on them in seconds; it is audited for model
security (backdoor.scan, poisoning.scan) and is expected to fail too.
"""

from __future__ import annotations

import json
from pathlib import Path

MISLABEL_FRACTION = 0.06
DUPLICATE_FRACTION = 0.03
#: fractions of the test set planted as exact copies, near-copies, shared writers and early scans
LEAK_EXACT_FRACTION = 0.02
LEAK_NEAR_FRACTION = 0.02
LEAK_WRITER_FRACTION = 0.02
LEAK_EARLY_FRACTION = 0.02
ROWS_PER_WRITER = 5
DEMO_POLICY = """\
# The demo's policy: the default one, plus the id and time columns the leakage checks need and the
# optimized variants the auditor builds from the model and audits.
name: demo
extends: nist-ai-rmf
exclude: [writer, scanned]
checks:
  leakage.group:
    params: {column: writer}
  leakage.temporal:
    params: {column: scanned}
  optimization.comparison:
    params:
      optimizations:
        - {kind: int8_weight_only}
        - {kind: prune_unstructured, sparsity: 0.5}
"""


def build_example(data_dir: Path, seed: int = 0, with_model: bool = True) -> dict:
    """Write train.csv, test.csv, policy.yaml, model.pt (TorchScript, unless ``with_model`` is false)
    and planted.json into ``data_dir``."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    digits = load_digits()
    X, y = digits.data.astype(np.float32), digits.target.astype(np.int64)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)

    n = len(y_tr)
    flipped = np.sort(rng.choice(n, int(round(MISLABEL_FRACTION * n)), replace=False))
    y_noisy = y_tr.copy()
    y_noisy[flipped] = (y_tr[flipped] + rng.integers(1, 10, len(flipped))) % 10

    clean_rows = np.setdiff1d(np.arange(n), flipped)
    sources = np.sort(rng.choice(clean_rows, int(round(DUPLICATE_FRACTION * n)), replace=False))
    X_tr = np.concatenate([X_tr, X_tr[sources]])
    y_noisy = np.concatenate([y_noisy, y_noisy[sources]])
    duplicates = np.arange(n, n + len(sources))

    leaks, X_te, y_te, writers, scanned = _plant_leakage(rng, X_tr, y_noisy, X_te, y_te, clean_rows)

    columns = [f"pixel_{i:02d}" for i in range(X.shape[1])]
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, feats, labels in (("train", X_tr, y_noisy), ("test", X_te, y_te)):
        frame = pd.DataFrame(feats.astype(np.int64), columns=columns)
        frame["label"] = labels
        frame["writer"] = writers[name]
        frame["scanned"] = scanned[name]
        frame.to_csv(data_dir / f"{name}.csv", index=False)
    (data_dir / "policy.yaml").write_text(DEMO_POLICY)

    if with_model:
        _train_model(X_tr / 16.0, y_noisy, data_dir / "model.pt", seed, int8_path=data_dir / "model-int8.pt")
    planted = {
        "mislabelled_rows": flipped.tolist(),
        "duplicate_rows": duplicates.tolist(),
        "duplicate_of": sources.tolist(),
        "train_rows": int(len(y_noisy)),
        "test_rows": int(len(y_te)),
        **leaks,
    }
    (data_dir / "planted.json").write_text(json.dumps(planted, indent=1) + "\n")
    return planted


def _plant_leakage(rng, X_tr, y_tr, X_te, y_te, clean_rows):
    """Replace some test rows by copies and near-copies of clean training rows, give writers and scan
    dates to both sets (test scans a year later) and plant shared writers and early scans.

    Returns (planted rows as lists for planted.json, test features, test labels, writers, scan dates)."""
    import numpy as np
    import pandas as pd

    n_te = len(y_te)
    counts = [int(round(f * n_te)) for f in (LEAK_EXACT_FRACTION, LEAK_NEAR_FRACTION, LEAK_WRITER_FRACTION,
                                             LEAK_EARLY_FRACTION)]
    picked = rng.choice(n_te, sum(counts), replace=False)
    exact_rows, near_rows, writer_rows, early_rows = np.split(picked, np.cumsum(counts)[:-1])
    exact_rows, near_rows, writer_rows, early_rows = (np.sort(r) for r in (exact_rows, near_rows, writer_rows, early_rows))
    sources = rng.choice(clean_rows, counts[0] + counts[1], replace=False)
    exact_src, near_src = sources[:counts[0]], sources[counts[0]:]
    X_te, y_te = X_te.copy(), y_te.copy()
    X_te[exact_rows], y_te[exact_rows] = X_tr[exact_src], y_tr[exact_src]
    busy = np.flatnonzero(X_tr.std(axis=0) >= 4)  # pixels that vary: a one-step change there is small
    for row, src in zip(near_rows, near_src):
        copy = X_tr[src].copy()
        pix = rng.choice(busy, 2, replace=False)
        copy[pix] += np.where(copy[pix] > 8, -1, 1)
        X_te[row], y_te[row] = copy, y_tr[src]
    n_tr = len(y_tr)
    writers = {"train": [f"w{i // ROWS_PER_WRITER:04d}" for i in rng.permutation(n_tr)],
               "test": [f"t{i // ROWS_PER_WRITER:04d}" for i in rng.permutation(n_te)]}
    # copies come from the same writer, and so do the planted shared-writer rows
    copied = np.concatenate([exact_rows, near_rows])
    shared_src = rng.choice(n_tr, len(writer_rows), replace=False)
    for row, src in zip(np.concatenate([copied, writer_rows]), np.concatenate([sources, shared_src])):
        writers["test"][row] = writers["train"][src]
    day = pd.Timestamp("2023-01-01")
    scanned = {"train": (day + pd.to_timedelta(rng.integers(0, 365, n_tr), unit="D")).strftime("%Y-%m-%d").tolist(),
               "test": (day + pd.to_timedelta(rng.integers(400, 700, n_te), unit="D")).strftime("%Y-%m-%d").tolist()}
    last = max(scanned["train"])
    for row in early_rows:
        scanned["test"][row] = (pd.Timestamp(last) - pd.Timedelta(days=int(rng.integers(0, 300)))).strftime("%Y-%m-%d")
    leaks = {
        "test_exact_copy_rows": exact_rows.tolist(), "test_exact_copy_of": exact_src.tolist(),
        "test_near_copy_rows": near_rows.tolist(), "test_near_copy_of": near_src.tolist(),
        "test_shared_writer_rows": sorted(np.concatenate([copied, writer_rows]).tolist()),
        "test_early_scan_rows": early_rows.tolist(),
    }
    return leaks, X_te, y_te, writers, scanned


def _train_model(X, y, path: Path, seed: int, int8_path: Path | None = None) -> None:
    """A small MLP on pixel values (the model scales its 0..16 inputs itself), saved as TorchScript, and
    its int8 dynamically quantized copy (``torch.ao``, whose quantized modules TorchScript can save)."""
    import warnings

    import torch
    from torch import nn

    torch.manual_seed(seed)

    class DigitsMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(64, 64), nn.ReLU())
            self.head = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.body(x / 16.0))

    model = DigitsMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt = torch.tensor(X * 16.0, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.long)
    for _ in range(150):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
    model.eval()
    torch.jit.save(torch.jit.script(model), str(path))
    if int8_path is not None:
        with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao; still works
            warnings.simplefilter("ignore")
            quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
            torch.jit.save(torch.jit.script(quantized), str(int8_path))


def _score(found: set[int], planted: set[int]) -> str:
    hit = len(found & planted)
    recall = hit / len(planted) if planted else 1.0
    precision = hit / len(found) if found else 1.0
    return f"found {hit} of {len(planted)} planted (recall {recall:.2f}, precision {precision:.2f}, {len(found)} flagged)"


DEMO_KEY_NOTE = """DEMO KEY - FOR DEMONSTRATION ONLY

This key pair was generated by `auditor demo` to show signed reports. Its passphrase is stored in
demo-passphrase.txt right beside it, so it protects nothing: never sign real reports with it.
For real reports create a key with `auditor keygen --out DIR` (passphrase from $AUDITOR_KEY_PASSPHRASE
or --passphrase-file) or use your organisation's document-signing certificate (PEM or PKCS#12).
"""


def demo_key(keys_dir: Path) -> tuple[Path, Path, Path]:
    """(key, certificate, passphrase file) of the demo signer, generated on first use."""
    import os
    import secrets

    from auditor.signing import keygen

    key, cert, passfile = keys_dir / "signing-key.pem", keys_dir / "signing-cert.pem", keys_dir / "demo-passphrase.txt"
    if key.is_file() and cert.is_file() and passfile.is_file():
        return key, cert, passfile
    keys_dir.mkdir(parents=True, exist_ok=True)
    passphrase = secrets.token_urlsafe(24)
    fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(passphrase + "\n")
    keygen(keys_dir, passphrase.encode(), name="auditor DEMO signer (demonstration only)",
           organization="auditor demo", days=365, force=True)
    (keys_dir / "README.txt").write_text(DEMO_KEY_NOTE)
    return key, cert, passfile


def _flagged_rows(checks: dict, check_id: str, dataset: str) -> set[int]:
    """Every row a check's findings flag in ``dataset`` (empty when the check did not run)."""
    if check_id not in checks:
        return set()
    return {r for f in checks[check_id]["findings"] if f.get("dataset") == dataset for r in f.get("rows") or []}


def run_demo(out: Path, seed: int = 0) -> int:
    from auditor.cli import EXIT_PASS, EXIT_UNUSABLE, main

    data_dir = out / "data"
    print(f"building the example in {data_dir} ...")
    planted = build_example(data_dir, seed)
    key, cert, passfile = demo_key(out / "keys")
    print(f"signing with the DEMO key in {key.parent} (for demonstration only: its passphrase is stored beside it)")
    code = main([
        "run", "--train", str(data_dir / "train.csv"), "--test", str(data_dir / "test.csv"), "--label", "label",
        "--model", str(data_dir / "model.pt"), "--optimized", str(data_dir / "model-int8.pt"),
        "--policy", str(data_dir / "policy.yaml"), "--out", str(out), "--seed", str(seed),
        "--sign-key", str(key), "--sign-cert", str(cert), "--passphrase-file", str(passfile),
    ])
    if code == EXIT_UNUSABLE:
        return code
    report = json.loads((out / "report.json").read_text())
    checks = {c["id"]: c for c in report["checks"]}

    def flagged(check_id: str, dataset: str = "train") -> set[int]:
        return _flagged_rows(checks, check_id, dataset)

    bd_out = out / "backdoor"
    bd_data = bd_out / "data"
    print(f"\nbuilding the backdoor example in {bd_data} ...")
    bd_planted = build_backdoor_example(bd_data, seed)
    policy = bd_data / "policy.yaml"
    policy.write_text(BACKDOOR_POLICY)
    code = main([
        "run", "--policy", str(policy), "--train", str(bd_data / "train.npz"), "--test", str(bd_data / "test.npz"),
        "--model", str(bd_data / "model.pt"), "--out", str(bd_out), "--seed", str(seed),
        "--sign-key", str(key), "--sign-cert", str(cert), "--passphrase-file", str(passfile),
    ])
    if code == EXIT_UNUSABLE:
        return code
    bd_report = json.loads((bd_out / "report.json").read_text())
    bd_checks = {c["id"]: c for c in bd_report["checks"]}
    backdoor = bd_checks["backdoor.scan"]
    bd_rows = _flagged_rows(bd_checks, "poisoning.scan", "train")

    print("\nplanted problems:")
    print(f"  mislabelled rows ({len(planted['mislabelled_rows'])}): data.label_issues "
          + _score(flagged("data.label_issues"), set(planted["mislabelled_rows"])))
    dups = {r for f in checks["data.duplicates"]["findings"] if "repeat" in f["message"] for r in f.get("rows") or []}
    print(f"  duplicated rows ({len(planted['duplicate_rows'])}): data.duplicates "
          + _score(dups, set(planted["duplicate_rows"])))
    for label, plant_key, check_id in (("test rows copied from training", "test_exact_copy_rows", "leakage.exact_duplicates"),
                                 ("test rows near-copied from training", "test_near_copy_rows", "leakage.near_duplicates"),
                                 ("test rows by writers also in training", "test_shared_writer_rows", "leakage.group"),
                                 ("test rows scanned in the training period", "test_early_scan_rows", "leakage.temporal")):
        print(f"  {label} ({len(planted[plant_key])}): {check_id} " + _score(flagged(check_id, "test"), set(planted[plant_key])))
    m = backdoor["metrics"]
    print(f"  backdoored model (trigger -> class {bd_planted['target_class']}, attack success "
          f"{bd_planted['attack_success']:.2f}): backdoor.scan {backdoor['status']}, suspected target class "
          f"{m.get('suspected_target_class')}, anomaly index {m.get('anomaly_index')}")
    print(f"  trigger-carrying rows ({len(bd_planted['poisoned_rows'])}): poisoning.scan "
          + _score(bd_rows, set(bd_planted["poisoned_rows"])))
    _print_robustness(checks)
    print(f"\ngate: {report['summary']['gate'].upper()} (expected FAIL: the example carries planted problems)")
    print(f"reports: {', '.join(str(out / n) for n in ('report.json', 'report.pdf', 'report.sarif', 'report.junit.xml'))}")
    print(f"signed: {out / 'report.dsse.json'} (DSSE/in-toto) and the PDF itself (PAdES); check them with")
    print(f"  auditor verify {out / 'report.json'} --cert {cert}")
    print(f"backdoor example report: {bd_out / 'report.json'} (gate {bd_report['summary']['gate'].upper()})")
    return EXIT_PASS


def _print_robustness(checks: dict) -> None:
    """The robustness of each model and how each optimized variant compares with the original."""
    adv = checks.get("robustness.adversarial", {})
    if adv.get("status") in ("pass", "fail"):
        print(f"\nrobustness.adversarial: {adv['status'].upper()} "
              f"({adv['metrics']['sample_size']} test rows, eps as a fraction of the input range)")
        for name, m in adv["metrics"]["models"].items():
            if "worst_case" in m:
                cases = ", ".join(f"L{w['norm']} {w['eps']:g}: {w['robust_accuracy']:.2f}" for w in m["worst_case"])
                print(f"  {name}: clean {m['clean_accuracy']:.3f}; robust {cases}")
    comp = checks.get("optimization.comparison", {})
    if comp.get("status") in ("pass", "fail"):
        print(f"\noptimization.comparison: {comp['status'].upper()}")
        for v in comp["metrics"]["variants"]:
            if "skipped" in v:
                print(f"  {v['name']}: not compared ({v['skipped']})")
                continue
            verdict = "FAIL: " + ", ".join(v["failed"]) if v["failed"] else "pass"
            drop = v["max_robust_accuracy_drop"]
            print(f"  {v['name']}{' (int8)' if v['int8'] else ''}: clean accuracy drop {100 * v['clean_accuracy_drop']:.1f} pts, "
                  f"agreement {100 * v['agreement']:.1f}%, robust accuracy drop "
                  f"{'n/a' if drop is None else f'{100 * drop:.1f} pts'}, size x{v['size_ratio']:.2f}, "
                  f"latency x{v['latency_ratio']:.2f} -> {verdict}")


# ---------------------------------------------------------------------- backdoored image example

#: the demo's trigger: a 2x2 patch of full-intensity pixels in the bottom-right corner, relabelled to class 0
DEMO_TRIGGER = {"rows": (6, 8), "cols": (6, 8), "value": 16.0}
BACKDOOR_TARGET = 0
BACKDOOR_FRACTION = 0.08
#: the second audit looks at model security only (the data checks run on the first example)
BACKDOOR_POLICY = """name: demo-backdoor
extends: nist-ai-rmf
description: the demo's backdoor example, audited for model security (data checks run on the main example)
checks:
  data.validation: {enabled: false}
  data.duplicates: {enabled: false}
  data.class_balance: {enabled: false}
  data.drift: {enabled: false}
  data.label_issues: {enabled: false}
"""


def digits_images(seed: int = 0):
    """scikit-learn's digits as N x 1 x 8 x 8 float32 images (0..16), split 75/25 stratified."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    X = d.images.astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)


def trigger_mask(rows=(6, 8), cols=(6, 8), value: float = 16.0, shape=(8, 8)):
    """A rectangular pixel-patch trigger: (mask, pattern) arrays of ``shape``."""
    import numpy as np

    mask = np.zeros(shape, dtype=np.float32)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = 1
    return mask, mask * value


def plant_backdoor(X, y, mask, pattern, target: int, fraction: float, seed: int = 0):
    """Stamp the trigger on ``fraction`` of the rows not labelled ``target`` and relabel them ``target``.
    Returns (X, y, poisoned row indices)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(y != target)
    poisoned = np.sort(rng.choice(candidates, int(round(fraction * len(candidates))), replace=False))
    X, y = X.copy(), y.copy()
    X[poisoned] = (1 - mask) * X[poisoned] + mask * pattern
    y[poisoned] = target
    return X, y, poisoned


def make_cnn(scale: float = 16.0, seed: int = 0):
    """A small CNN for 1 x 8 x 8 digits that scales its 0..16 inputs itself (weights initialised from ``seed``)."""
    import torch

    from auditor._demo_nets import DigitsCNN

    torch.manual_seed(seed)
    return DigitsCNN(scale)


def train_classifier(model, X, y, epochs: int = 12, seed: int = 0, lr: float = 3e-3, batch_size: int = 64):
    """Minibatch Adam on (X, y); single-threaded (small models train faster that way). Returns the model in eval mode."""
    import torch
    from torch import nn

    from auditor.checks._features import torch_threads

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    with torch_threads(1):
        for _ in range(epochs):
            perm = torch.randperm(len(xt), generator=gen)
            for start in range(0, len(xt), batch_size):
                idx = perm[start : start + batch_size]
                opt.zero_grad()
                nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
                opt.step()
    return model.eval()


def attack_success(model, X, y, mask, pattern, target: int) -> float:
    """Fraction of inputs not of ``target`` that the trigger turns into ``target``."""
    import numpy as np
    import torch

    rows = X[y != target]
    stamped = ((1 - mask) * rows + mask * pattern).astype(np.float32)
    with torch.no_grad():
        return float((model(torch.from_numpy(stamped)).argmax(1).numpy() == target).mean())


def build_backdoor_example(data_dir: Path, seed: int = 0) -> dict:
    """Write train.npz / test.npz (digits as 1 x 8 x 8 images, 8 % of the non-target training rows carrying a
    2x2 corner trigger and relabelled 0), model.pt (a small CNN trained on them, TorchScript) and planted.json."""
    import numpy as np
    import torch

    X_tr, X_te, y_tr, y_te = digits_images(seed)
    mask, pattern = trigger_mask(**DEMO_TRIGGER)
    X_p, y_p, poisoned = plant_backdoor(X_tr, y_tr, mask, pattern, BACKDOOR_TARGET, BACKDOOR_FRACTION, seed)
    model = train_classifier(make_cnn(seed=seed), X_p, y_p, seed=seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    np.savez(data_dir / "train.npz", X=X_p, y=y_p)
    np.savez(data_dir / "test.npz", X=X_te, y=y_te)
    torch.jit.save(torch.jit.script(model), str(data_dir / "model.pt"))
    planted = {
        "poisoned_rows": poisoned.tolist(),
        "target_class": BACKDOOR_TARGET,
        "trigger": {"mask": mask.tolist(), "pattern": pattern.tolist()},
        "attack_success": round(attack_success(model, X_te, y_te, mask, pattern, BACKDOOR_TARGET), 4),
        "clean_accuracy": round(float((model(torch.from_numpy(X_te)).argmax(1).numpy() == y_te).mean()), 4),
        "train_rows": int(len(y_p)),
    }
    (data_dir / "planted.json").write_text(json.dumps(planted, indent=1) + "\n")
    return planted
