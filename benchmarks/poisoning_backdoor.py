"""poisoning.scan + backdoor.scan vs ART's ActivationDefence and SpectralSignatureDefense (defaults), side by side.

Data: about 7,000 8x8 digit images (1 x 8 x 8, values 0..16): scikit-learn's digits training split plus copies
shifted by one pixel (zero fill) and lightly noised, and the untouched 450-image test split. For each planted
trigger (a pixel patch, a line, a 3x3 checkerboard; 5-10 % of the non-target training rows stamped and relabelled)
the demo's small CNN is trained on the poisoned rows, saved as TorchScript, and audited:

- **auditor**: ``backdoor.scan`` then ``poisoning.scan`` through the engine (one audit context, so poisoning.scan
  reuses the triggers backdoor.scan reconstructed), timed together;
- **ART AC**: ``ActivationDefence(PyTorchClassifier(same model), x_train, y_train).detect_poison()``, defaults;
- **ART SS**: ``SpectralSignatureDefense(same classifier, x_train, y_train).detect_poison()``, defaults.

The same architecture trained on the clean rows gives the false-positive side. Recall and precision are over the
planted rows; times are wall-clock on this machine, one torch thread and single-threaded BLAS for every method.

Run: ``.venv/bin/python benchmarks/poisoning_backdoor.py [--rows 7000] [--seed 0]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditor import demo  # noqa: E402
from auditor import policy as policy_mod  # noqa: E402
from auditor.engine import AuditContext, run_check  # noqa: E402
from auditor.inputs import load_dataset  # noqa: E402
from auditor.models import load_model  # noqa: E402

TRIGGERS = [
    # name, mask rows, mask cols, checkerboard?, target, poisoned fraction of the non-target rows
    ("2x2 patch, left edge", (5, 7), (0, 2), False, 3, 0.07),
    ("1x4 line, bottom row", (7, 8), (0, 4), False, 6, 0.05),
    ("3x3 checkerboard, top right", (0, 3), (5, 8), True, 8, 0.10),
]


def augmented_digits(rows: int, seed: int):
    """The digits training split plus shifted, noised copies (rows in total), and the clean test split."""
    X_tr, X_te, y_tr, y_te = demo.digits_images(seed)
    rng = np.random.default_rng(seed)
    parts, labels = [X_tr], [y_tr]
    while sum(len(p) for p in parts) < rows:
        dy, dx = rng.integers(-1, 2, size=2)
        shifted = np.zeros_like(X_tr)
        src = X_tr[:, :, max(0, -dy) : 8 - max(0, dy), max(0, -dx) : 8 - max(0, dx)]
        shifted[:, :, max(0, dy) : 8 - max(0, -dy), max(0, dx) : 8 - max(0, -dx)] = src
        parts.append(np.clip(shifted + rng.normal(0, 0.5, shifted.shape), 0, 16).astype(np.float32))
        labels.append(y_tr)
    X = np.concatenate(parts)[:rows]
    y = np.concatenate(labels)[:rows]
    order = rng.permutation(len(y))
    return X[order], y[order], X_te, y_te


def trigger(rows, cols, checker: bool):
    mask, pattern = demo.trigger_mask(rows=rows, cols=cols)
    if checker:
        ii, jj = np.indices(mask.shape)
        pattern = pattern * ((ii + jj) % 2 == 0)
    return mask, pattern


def scores(found: set[int], planted: set[int]) -> tuple[float, float]:
    hit = len(found & planted)
    return (hit / len(planted) if planted else float("nan")), (hit / len(found) if found else float("nan"))


def run_auditor(work: Path) -> dict:
    ctx = AuditContext(policy=policy_mod.load(None), seed=0, train=load_dataset(work / "train.npz", "train"),
                       test=load_dataset(work / "test.npz", "test"), model=load_model(work / "model.pt"))
    t0 = time.perf_counter()
    b = run_check("backdoor.scan", ctx)
    t1 = time.perf_counter()
    p = run_check("poisoning.scan", ctx)
    t2 = time.perf_counter()
    for r in (b, p):
        if r.status == "error":
            raise RuntimeError(f"{r.id}: {r.reason}\n{r.traceback}")
    found = {r for f in p.findings if f.dataset == "train" for r in (f.rows or ())}
    return {"found": found, "backdoor_status": b.status, "target": b.metrics["suspected_target_class"],
            "anomaly_index": b.metrics["anomaly_index"], "poisoning_status": p.status,
            "t_backdoor": t1 - t0, "t_poisoning": t2 - t1}


def run_art(model, X: np.ndarray, y: np.ndarray) -> dict:
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=X.shape[1:], nb_classes=10,
                            clip_values=(0.0, 16.0))
    onehot = np.eye(10, dtype=np.float32)[y]
    out = {}
    t0 = time.perf_counter()
    _, is_clean = ActivationDefence(clf, X, onehot).detect_poison()
    out["t_ac"] = time.perf_counter() - t0
    out["found_ac"] = set(np.flatnonzero(np.asarray(is_clean) == 0).tolist())
    t0 = time.perf_counter()
    _, is_clean = SpectralSignatureDefense(clf, X, onehot).detect_poison()
    out["t_ss"] = time.perf_counter() - t0
    out["found_ss"] = set(np.flatnonzero(np.asarray(is_clean) == 0).tolist())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=7000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from threadpoolctl import threadpool_limits

    X_tr, y_tr, X_te, y_te = augmented_digits(args.rows, args.seed)
    results = []
    cases = [(name, *spec) for name, *spec in TRIGGERS] + [("clean (no trigger)", None, None, False, None, 0.0)]
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(limits=1):
        for i, (name, rows, cols, checker, target, fraction) in enumerate(cases):
            work = Path(tmp) / f"case{i}"
            work.mkdir()
            if rows is None:
                X, y, planted, mask, pattern = X_tr, y_tr, np.array([], dtype=int), None, None
            else:
                mask, pattern = trigger(rows, cols, checker)
                X, y, planted = demo.plant_backdoor(X_tr, y_tr, mask, pattern, target, fraction, args.seed)
            t0 = time.perf_counter()
            model = demo.train_classifier(demo.make_cnn(seed=args.seed), X, y, epochs=args.epochs, seed=args.seed)
            t_train = time.perf_counter() - t0
            np.savez(work / "train.npz", X=X, y=y)
            np.savez(work / "test.npz", X=X_te, y=y_te)
            torch.jit.save(torch.jit.script(model), str(work / "model.pt"))
            with torch.no_grad():
                acc = float((model(torch.from_numpy(X_te)).argmax(1).numpy() == y_te).mean())
            asr = demo.attack_success(model, X_te, y_te, mask, pattern, target) if mask is not None else None
            ours = run_auditor(work)
            art = run_art(model, X, y)
            P = set(planted.tolist())
            row = {"case": name, "rows": int(len(y)), "poisoned": len(P), "target": target, "train_s": round(t_train, 1),
                   "clean_acc": round(acc, 3), "attack_success": None if asr is None else round(asr, 3),
                   "backdoor_status": ours["backdoor_status"], "suspected_target": ours["target"],
                   "anomaly_index": ours["anomaly_index"]}
            for key, found, secs in (("auditor", ours["found"], ours["t_backdoor"] + ours["t_poisoning"]),
                                     ("art_ac", art["found_ac"], art["t_ac"]), ("art_ss", art["found_ss"], art["t_ss"])):
                rec, prec = scores(found, P)
                row[key] = {"flagged": len(found), "flagged_fraction": round(len(found) / len(y), 4),
                            "recall": None if np.isnan(rec) else round(rec, 3),
                            "precision": None if np.isnan(prec) else round(prec, 3), "seconds": round(secs, 1)}
            row["auditor"]["seconds_backdoor_scan"] = round(ours["t_backdoor"], 1)
            row["auditor"]["seconds_poisoning_scan"] = round(ours["t_poisoning"], 1)
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    def fmt(v):
        return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

    print("| case | rows (poisoned) | ASR | method | flagged | recall | precision | time (s) |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for r in results:
        for key, label in (("auditor", "auditor poisoning.scan + backdoor.scan"), ("art_ac", "ART ActivationDefence"),
                           ("art_ss", "ART SpectralSignatureDefense")):
            m = r[key]
            print(f"| {r['case']} | {r['rows']} ({r['poisoned']}) | {fmt(r['attack_success'])} | {label} | "
                  f"{m['flagged']} | {fmt(m['recall'])} | {fmt(m['precision'])} | {m['seconds']:.1f} |")
    print()
    print("| case | backdoor.scan | suspected target (planted) | anomaly index | backdoor.scan s | poisoning.scan s |")
    print("|---|---|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['case']} | {r['backdoor_status']} | {r['suspected_target']} ({fmt(r['target'])}) | "
              f"{r['anomaly_index']} | {r['auditor']['seconds_backdoor_scan']} | {r['auditor']['seconds_poisoning_scan']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
