"""The auditor's adversarial-attack time against calling ART directly on the same model and data.

A small CNN is trained on scikit-learn's digits (1x8x8 images in [0, 1]); the 450-image test split is
attacked with PGD L-inf (eps 0.1, 10 steps), FGSM L-inf (eps 0.1) and the black-box Square attack
(eps 0.1, 100 queries), each

- through the auditor: ``robustness.adversarial`` run end to end (evaluation sample, clean predictions,
  wrapping the model for ART, the attack, predictions on the adversarial inputs, the report metrics),
  on a context whose cache is cleared before each repeat; and
- directly with ART: ``PyTorchClassifier`` + the attack's ``generate`` + predictions on the clean and
  adversarial inputs, as one would write it by hand.

Both run with the same thread settings (the auditor's: one torch thread on a machine with <= 4 cores).
Repeats are interleaved and the median is reported. Run: ``.venv/bin/python benchmarks/robustness_attack_time.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ATTACKS = {
    "pgd_linf": "{name: pgd, norm: inf, eps: [0.1], steps: 10}",
    "fgsm_linf": "{name: fgsm, norm: inf, eps: [0.1]}",
    "square_linf": "{name: square, norm: inf, eps: [0.1], steps: 100}",
}


def direct_art(model: nn.Module, X: np.ndarray, y: np.ndarray, attack: str) -> float:
    """The hand-written ART equivalent; returns the robust accuracy (RobustBench definition)."""
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent, SquareAttack
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=X.shape[1:], nb_classes=10,
                            clip_values=(0.0, 1.0))
    if attack == "pgd_linf":
        atk = ProjectedGradientDescent(clf, norm=np.inf, eps=0.1, eps_step=0.025, max_iter=10, batch_size=256,
                                       verbose=False)
    elif attack == "fgsm_linf":
        atk = FastGradientMethod(clf, norm=np.inf, eps=0.1, eps_step=0.1, batch_size=256)
    else:
        atk = SquareAttack(clf, norm=np.inf, eps=0.1, max_iter=100, nb_restarts=1, batch_size=256, verbose=False)
    adv = atk.generate(X, y=y)
    clean = clf.predict(X, batch_size=512).argmax(1) == y
    under = clf.predict(adv, batch_size=512).argmax(1) == y
    return float(np.mean(clean & under))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    from auditor.checks.robustness import compute_limits, seeded, torch_threads
    from auditor.engine import run_check
    from tests.robust_helpers import context, digits_images, trained_cnn

    _, X, _, y = digits_images()
    trained_cnn()  # train once, outside the timings
    tmp = Path(tempfile.mkdtemp(prefix="bench-robust-"))
    rows = []
    for name, spec in ATTACKS.items():
        ctx = context(tmp / name, f"""
name: bench
extends: nist-ai-rmf
checks:
  robustness.adversarial:
    params: {{sample_size: 10000, clip: [0.0, 1.0], eps_units: absolute, attacks: [{spec}]}}
""")
        model = trained_cnn()
        run_check("robustness.adversarial", ctx)  # warm-up (imports, first calls)
        with compute_limits(), seeded(0):
            direct_art(model, X, y, name)
        t_aud, t_art, acc_aud, acc_art = [], [], None, None
        for _ in range(args.repeats):
            ctx.cache.clear()
            start = time.perf_counter()
            r = run_check("robustness.adversarial", ctx)
            t_aud.append(time.perf_counter() - start)
            acc_aud = r.metrics["results"][0]["robust_accuracy"]
            start = time.perf_counter()
            with compute_limits(), seeded(0):
                acc_art = direct_art(model, X, y, name)
            t_art.append(time.perf_counter() - start)
        a, d = statistics.median(t_aud), statistics.median(t_art)
        rows.append((name, a, d, a / d - 1, acc_aud, acc_art))
    print(f"digits CNN, {len(y)} test images, torch threads {torch_threads()}, median of {args.repeats}")
    print(f"{'attack':<12} {'auditor s':>10} {'ART s':>8} {'overhead':>9} {'robust acc (auditor / ART)':>28}")
    for name, a, d, over, ra, rd in rows:
        print(f"{name:<12} {a:>10.3f} {d:>8.3f} {100 * over:>8.1f}% {ra:>14.4f} / {rd:.4f}")
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    raise SystemExit(main())
