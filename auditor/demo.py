"""``auditor demo``: a bundled example with planted problems, audited end to end.

Builds a train/test split of scikit-learn's digits (8x8 images as 64 pixel columns), plants
mislabelled and duplicated training rows, trains a small PyTorch classifier (saved as TorchScript),
audits it all with the default policy into ``OUT/`` and reports how much of what was planted the
checks found. A second example in ``OUT/backdoor/`` holds the digits as 1x8x8 images (NPZ) with a
pixel-patch backdoor planted in 8 % of the training rows and a small CNN trained on them in seconds;
it is audited for model security (backdoor.scan, poisoning.scan). The gates are expected to fail:
that is the point of the planted problems.
"""

from __future__ import annotations

import json
from pathlib import Path

MISLABEL_FRACTION = 0.06
DUPLICATE_FRACTION = 0.03


def build_example(data_dir: Path, seed: int = 0) -> dict:
    """Write train.csv, test.csv, model.pt (TorchScript) and planted.json into ``data_dir``."""
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

    columns = [f"pixel_{i:02d}" for i in range(X.shape[1])]
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, feats, labels in (("train", X_tr, y_noisy), ("test", X_te, y_te)):
        frame = pd.DataFrame(feats.astype(np.int64), columns=columns)
        frame["label"] = labels
        frame.to_csv(data_dir / f"{name}.csv", index=False)

    _train_model(X_tr / 16.0, y_noisy, data_dir / "model.pt", seed)
    planted = {
        "mislabelled_rows": flipped.tolist(),
        "duplicate_rows": duplicates.tolist(),
        "duplicate_of": sources.tolist(),
        "train_rows": int(len(y_noisy)),
        "test_rows": int(len(y_te)),
    }
    (data_dir / "planted.json").write_text(json.dumps(planted, indent=1) + "\n")
    return planted


def _train_model(X, y, path: Path, seed: int) -> None:
    """A small MLP on pixel values (the model scales its 0..16 inputs itself), saved as TorchScript."""
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


def _score(found: set[int], planted: set[int]) -> str:
    hit = len(found & planted)
    recall = hit / len(planted) if planted else 1.0
    precision = hit / len(found) if found else 1.0
    return f"found {hit} of {len(planted)} planted (recall {recall:.2f}, precision {precision:.2f}, {len(found)} flagged)"


def run_demo(out: Path, seed: int = 0) -> int:
    from auditor.cli import EXIT_PASS, EXIT_UNUSABLE, main

    data_dir = out / "data"
    print(f"building the example in {data_dir} ...")
    planted = build_example(data_dir, seed)
    code = main([
        "run", "--train", str(data_dir / "train.csv"), "--test", str(data_dir / "test.csv"), "--label", "label",
        "--model", str(data_dir / "model.pt"), "--out", str(out), "--seed", str(seed),
    ])
    if code == EXIT_UNUSABLE:
        return code
    report = json.loads((out / "report.json").read_text())
    checks = {c["id"]: c for c in report["checks"]}

    def flagged(check_id: str) -> set[int]:
        return {r for f in checks[check_id]["findings"] if f.get("dataset") == "train" for r in f.get("rows") or []}

    bd_out = out / "backdoor"
    bd_data = bd_out / "data"
    print(f"\nbuilding the backdoor example in {bd_data} ...")
    bd_planted = build_backdoor_example(bd_data, seed)
    policy = bd_data / "policy.yaml"
    policy.write_text(BACKDOOR_POLICY)
    code = main([
        "run", "--policy", str(policy), "--train", str(bd_data / "train.npz"), "--test", str(bd_data / "test.npz"),
        "--model", str(bd_data / "model.pt"), "--out", str(bd_out), "--seed", str(seed),
    ])
    if code == EXIT_UNUSABLE:
        return code
    bd_report = json.loads((bd_out / "report.json").read_text())
    bd_checks = {c["id"]: c for c in bd_report["checks"]}
    backdoor = bd_checks["backdoor.scan"]
    bd_rows = {r for f in bd_checks["poisoning.scan"]["findings"] if f.get("dataset") == "train" for r in f.get("rows") or []}

    print("\nplanted problems:")
    print(f"  mislabelled rows ({len(planted['mislabelled_rows'])}): data.label_issues "
          + _score(flagged("data.label_issues"), set(planted["mislabelled_rows"])))
    dups = {r for f in checks["data.duplicates"]["findings"] if "repeat" in f["message"] for r in f.get("rows") or []}
    print(f"  duplicated rows ({len(planted['duplicate_rows'])}): data.duplicates "
          + _score(dups, set(planted["duplicate_rows"])))
    m = backdoor["metrics"]
    print(f"  backdoored model (trigger -> class {bd_planted['target_class']}, attack success "
          f"{bd_planted['attack_success']:.2f}): backdoor.scan {backdoor['status']}, suspected target class "
          f"{m.get('suspected_target_class')}, anomaly index {m.get('anomaly_index')}")
    print(f"  trigger-carrying rows ({len(bd_planted['poisoned_rows'])}): poisoning.scan "
          + _score(bd_rows, set(bd_planted["poisoned_rows"])))
    print(f"\ngate: {report['summary']['gate'].upper()} (expected FAIL: the example carries planted problems)")
    print(f"report: {out / 'report.json'}")
    print(f"backdoor example report: {bd_out / 'report.json'} (gate {bd_report['summary']['gate'].upper()})")
    return EXIT_PASS


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
    from torch import nn

    torch.manual_seed(seed)

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = scale
            self.features = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 64), nn.ReLU(),
            )
            self.classifier = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.features(x / self.scale))

    return DigitsCNN()


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
