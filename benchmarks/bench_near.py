"""Near-duplicate leakage: the auditor's leakage.near_duplicates against cleanlab Datalab's
``near_duplicate`` issue type on the same data, side by side (time, recall, precision).

    python benchmarks/bench_near.py [--quick]

Scenarios (numeric + categorical tables; near-copies = training rows with noise of 1e-3 x each
numeric column's standard deviation, categoricals kept):
  planted-N       N training rows, 2 % of the test rows near-copies
  duplicated      the same, with 75 % of the training rows exact repeats of others
  dense-2d        a clean, dense 2-column table: any flag is a false alarm
  lsh-N           17 numeric columns (no categoricals: one block), N training rows: the auditor's E2LSH
                  path against its own exact search

cleanlab gets the same rows (train and test stacked; numbers standardised, categoricals one-hot) and
its default threshold (0.13 x the median nearest-neighbour distance); a test row counts as flagged by
cleanlab when its near-duplicate set holds a training row. Each method runs in its own process.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import DATA, cores, measure


def tables(n_train: int, n_test: int, seed: int, numeric: int = 6, dup_fraction: float = 0.0,
           near_fraction: float = 0.02, dense2d: bool = False, categorical: bool = True):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = n_train + n_test
    if dense2d:
        full = pd.DataFrame({"x": rng.normal(size=n), "y": rng.normal(size=n)})
    else:
        full = pd.DataFrame({f"num{i}": rng.normal(loc=i, scale=1 + i, size=n) for i in range(numeric)})
        full["count"] = rng.integers(0, 500, n).astype(float)
        if categorical:
            full["colour"] = rng.choice(["red", "green", "blue", "teal"], n)
            full["city"] = rng.choice([f"city {i}" for i in range(8)], n)
    full["label"] = rng.integers(0, 2, n)
    train, test = full.iloc[:n_train].reset_index(drop=True), full.iloc[n_train:].reset_index(drop=True)
    k = int(near_fraction * n_test)
    rows, src = rng.choice(n_test, k, replace=False), rng.choice(n_train, k, replace=False)
    num_cols = [c for c in train.columns if c != "label" and pd.api.types.is_numeric_dtype(train[c])]
    copy = train.iloc[src].copy()
    for c in num_cols:
        copy[c] = copy[c] + rng.normal(scale=1e-3 * train[c].std(), size=k)
    test.iloc[rows] = copy.to_numpy()
    if dup_fraction:
        extra = train.iloc[rng.choice(n_train, int(dup_fraction / (1 - dup_fraction) * n_train))]
        train = pd.concat([train, extra], ignore_index=True)
    return train, test, sorted(rows.tolist())


def write(name: str, **spec) -> dict:
    out = DATA / "near" / name
    meta = out / "planted.json"
    if not meta.exists():
        out.mkdir(parents=True, exist_ok=True)
        train, test, planted = tables(**spec)
        train.to_parquet(out / "train.parquet", index=False)
        test.to_parquet(out / "test.parquet", index=False)
        meta.write_text(json.dumps({"dir": str(out), "planted": planted, "train_rows": len(train),
                                    "test_rows": len(test)}))
    return json.loads(meta.read_text())


def run_auditor(directory: str, exact_pairs: float | None = None) -> dict:
    from auditor import policy as policy_mod
    from auditor.engine import AuditContext, run_check
    from auditor.inputs import load_dataset

    ctx_kw = {}
    if exact_pairs is not None:
        path = Path(tempfile.mkdtemp()) / "p.yaml"
        path.write_text("name: b\nextends: nist-ai-rmf\nchecks:\n  leakage.near_duplicates:\n"
                        f"    params: {{exact_pairs: {exact_pairs}}}\n")
        ctx_kw["policy"] = policy_mod.load(path)
    else:
        ctx_kw["policy"] = policy_mod.load(None)
    import sklearn.neighbors  # noqa: F401  (imports outside the timing, as for cleanlab)
    import threadpoolctl  # noqa: F401

    ctx = AuditContext(seed=0, train=load_dataset(f"{directory}/train.parquet", "train", label="label"),
                       test=load_dataset(f"{directory}/test.parquet", "test", label="label"), **ctx_kw)
    t = time.perf_counter()
    r = run_check("leakage.near_duplicates", ctx)
    rows = sorted({x for f in r.findings for x in (f.rows or ())})
    return {"seconds": round(time.perf_counter() - t, 2), "flagged": rows, "search": r.metrics.get("search"),
            "status": r.status, "reason": r.reason}


def run_cleanlab(directory: str) -> dict:
    import numpy as np
    import pandas as pd
    from cleanlab import Datalab

    train = pd.read_parquet(f"{directory}/train.parquet")
    test = pd.read_parquet(f"{directory}/test.parquet")
    both = pd.concat([train, test], ignore_index=True)
    feats = both.drop(columns="label")
    num = feats.select_dtypes("number")
    cats = feats.select_dtypes(exclude="number")
    parts = [((num - num.mean()) / num.std()).to_numpy()]
    if cats.shape[1]:
        parts.append(pd.get_dummies(cats, dtype=float).to_numpy())
    X = np.hstack(parts)
    t = time.perf_counter()
    lab = Datalab(data={"label": both["label"].to_numpy()}, label_name="label", verbosity=0)
    lab.find_issues(features=X, issue_types={"near_duplicate": {}})
    sets = lab.get_info("near_duplicate")["near_duplicate_sets"]
    n_train = len(train)
    flagged = sorted(i - n_train for i in range(n_train, len(both)) if any(j < n_train for j in sets[i]))
    return {"seconds": round(time.perf_counter() - t, 2), "flagged": flagged,
            "threshold": float(lab.get_info("near_duplicate")["threshold"]
                             * lab.get_info("near_duplicate")["median_distance_to_nearest_neighbor"])}


def score(flagged, planted) -> str:
    f, p = set(flagged), set(planted)
    hit = len(f & p)
    recall = hit / len(p) if p else float("nan")
    precision = hit / len(f) if f else (1.0 if not p else 0.0)
    return f"{recall:6.3f} {precision:9.3f} {len(f):7d}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    args = ap.parse_args()
    sizes = [5_000, 20_000] if args.quick else [5_000, 20_000, 50_000]
    scenarios = {f"planted-{n // 1000}k": dict(n_train=n, n_test=n // 4, seed=1) for n in sizes}
    scenarios["duplicated"] = dict(n_train=20_000, n_test=5_000, seed=2, dup_fraction=0.75)
    scenarios["dense-2d"] = dict(n_train=40_000, n_test=10_000, seed=3, dense2d=True, near_fraction=0.0)
    print(f"{cores()} cores")
    print(f"{'scenario':14s} {'train':>8s} {'test':>7s} {'method':22s} {'secs':>7s} {'recall':>6s} {'precision':>9s} {'flagged':>7s}")
    for name, spec in scenarios.items():
        d = write(name, **spec)
        for method, fn in (("auditor", "run_auditor"), ("cleanlab Datalab", "run_cleanlab")):
            r = measure("bench_near", fn, d["dir"])
            if "error" in r:
                print(f"{name:14s} {d['train_rows']:8d} {d['test_rows']:7d} {method:22s} failed: {r['error']}")
                continue
            extra = f"  (threshold {r['threshold']:.4g})" if "threshold" in r else f"  ({r['search']} search)"
            print(f"{name:14s} {d['train_rows']:8d} {d['test_rows']:7d} {method:22s} {r['seconds']:7.2f} "
                  f"{score(r['flagged'], d['planted'])}{extra}")
    lsh_sizes = [100_000] if args.quick else [200_000, 1_000_000]
    for n in lsh_sizes:
        name = f"lsh-{n // 1000}k"
        d = write(name, n_train=n, n_test=n // 10, seed=4, numeric=16, near_fraction=0.01, categorical=False)
        exact = measure("bench_near", "run_auditor", d["dir"], 1e15)
        lsh = measure("bench_near", "run_auditor", d["dir"], 0)
        for method, r in (("auditor exact", exact), ("auditor E2LSH", lsh)):
            if "error" in r:
                print(f"{name:14s} {method:22s} failed: {r['error']}")
                continue
            print(f"{name:14s} {d['train_rows']:8d} {d['test_rows']:7d} {method:22s} {r['seconds']:7.2f} "
                  f"{score(r['flagged'], d['planted'])}  ({r['search']} search)")
        if "error" not in exact and "error" not in lsh:
            same = len(set(exact["flagged"]) & set(lsh["flagged"])) / max(len(exact["flagged"]), 1)
            print(f"{'':14s} E2LSH finds {same:.4f} of the rows exact search flags, "
                  f"{exact['seconds'] / max(lsh['seconds'], 1e-9):.1f}x faster")


if __name__ == "__main__":
    main()
