"""leakage.near_duplicates on Spark (local[2]) against an exact brute-force reference: recall, precision, time.

    python benchmarks/spark_near_duplicates.py [--rows 200000] [--test-rows N] [--seed 0] [--skip-exact]

Data: ``rows`` training rows of 16 normal columns (different locations and scales) and an integer column
(17 numeric dimensions, one block, so an exact search compares every test x train pair); ``test-rows``
(default rows / 10) test rows, 1 % of them near-copies of distinct training rows: the training row plus
Gaussian noise of ``tier x`` each column's standard deviation, a quarter each at tiers 1e-3, 1e-2, 3e-2 and
0.1 (in the scaled space those are distances of about 0.004, 0.04, 0.12 and 0.4, against a search radius
of about 0.5 here), plus 0.1 % exact copies (excluded by the check by design). Files are Parquet, cached
in benchmarks/.data/spark_near/.

Methods, each in its own fresh process:

- **spark**: ``--engine spark`` on ``local[2]`` (E2LSH candidates joined in Spark SQL, exact distances);
- **exact**: the pandas engine with its exact search forced (``exact_pairs`` = 1e15: blocked brute force
  over all pairs, float64 distances of the best candidates): the same scaling, null model, p-values and
  Benjamini-Hochberg threshold, so it is the reference the Spark result should equal;
- **pandas**: the pandas engine's default at this size (its own E2LSH grid), for comparison.

Reported: seconds (the check alone, after loading), wall seconds of the process (JVM start, reading),
rows flagged, recall and precision against the exact reference's flags and against the planted rows (per
noise tier), and how often the matched training row is the planted source.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, cores, measure  # noqa: E402

TIERS = (1e-3, 1e-2, 3e-2, 1e-1)


def make(n_train: int, n_test: int, seed: int) -> dict:
    """Write train/test Parquet with planted near-copies (by tier) and exact copies; returns the plan."""
    import numpy as np
    import pandas as pd

    out = DATA / "spark_near" / f"{n_train}x{n_test}-s{seed}"
    meta = out / "planted.json"
    if meta.exists():  # the data folder may have moved since it was written
        return {**json.loads(meta.read_text()), "dir": str(out)}
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    full = pd.DataFrame({f"num{i}": rng.normal(loc=i, scale=1 + i, size=n) for i in range(16)})
    full["count"] = rng.integers(0, 500, n).astype(float)
    full["label"] = rng.integers(0, 2, n)
    train, test = full.iloc[:n_train].reset_index(drop=True), full.iloc[n_train:].reset_index(drop=True)
    n_near, n_exact = max(4, n_test // 100), max(1, n_test // 1000)
    rows = rng.choice(n_test, n_near + n_exact, replace=False)
    src = rng.choice(n_train, n_near + n_exact, replace=False)
    cols = [c for c in train.columns if c != "label"]
    std = train[cols].std().to_numpy()
    planted = {}
    for k, (t, s) in enumerate(zip(rows[:n_near], src[:n_near])):
        tier = TIERS[k % len(TIERS)]
        test.loc[t, cols] = train.loc[s, cols].to_numpy() + rng.normal(size=len(cols)) * tier * std
        test.loc[t, "label"] = train.loc[s, "label"]
        planted[int(t)] = {"train_row": int(s), "tier": tier}
    for t, s in zip(rows[n_near:], src[n_near:]):
        test.loc[t] = train.loc[s]
    out.mkdir(parents=True, exist_ok=True)
    train.to_parquet(out / "train.parquet", index=False)
    test.to_parquet(out / "test.parquet", index=False)
    plan = {"dir": str(out), "train_rows": n_train, "test_rows": n_test, "planted": planted,
            "exact_copies": sorted(int(t) for t in rows[n_near:])}
    meta.write_text(json.dumps(plan))
    return plan


def _policy(exact_pairs: float | None):
    from auditor import policy as policy_mod

    if exact_pairs is None:
        return policy_mod.load(None)
    path = Path(tempfile.mkdtemp()) / "p.yaml"
    path.write_text("name: b\nextends: nist-ai-rmf\nchecks:\n  leakage.near_duplicates:\n"
                    f"    params: {{exact_pairs: {exact_pairs}}}\n")
    return policy_mod.load(path)


def _result(r, seconds: float, load_s: float) -> dict:
    matches = {int(m[0]): int(m[1]) for f in r.findings for m in (f.details or {}).get("matches", [])}
    keep = ("search", "pairs_compared", "lsh_tables", "lsh_projections_per_table", "lsh_recall_at_radius",
            "distance_guard", "reference_nn_distance_q25", "twonn_dimension", "weibull_shape", "p_value_cutoff",
            "distinct_train_rows", "exact_copies_excluded", "rows_searched_exactly")
    return {"seconds": round(seconds, 2), "load_seconds": round(load_s, 2), "status": r.status, "reason": r.reason,
            "matches": matches, "metrics": {k: r.metrics.get(k) for k in keep}}


def run_spark(directory: str, driver_memory: str = "3g") -> dict:
    """The check on Spark, local[2]."""
    from auditor import spark as spark_mod
    from auditor.engine import AuditContext, run_check

    spark_mod.session(spark_mod.SparkSettings(master="local[2]", driver_memory=driver_memory))
    t = time.perf_counter()
    train = spark_mod.load_dataset(f"{directory}/train.parquet", "train", label="label")
    test = spark_mod.load_dataset(f"{directory}/test.parquet", "test", label="label")
    load_s = time.perf_counter() - t
    ctx = AuditContext(policy=_policy(None), seed=0, engine="spark", train=train, test=test)
    t = time.perf_counter()
    r = run_check("leakage.near_duplicates", ctx)
    return _result(r, time.perf_counter() - t, load_s)


def run_pandas(directory: str, exact_pairs: float | None = None) -> dict:
    """The check on the pandas engine; ``exact_pairs`` = 1e15 forces its exact brute-force search."""
    import sklearn.neighbors  # noqa: F401  (imports outside the timing)
    import threadpoolctl  # noqa: F401

    from auditor.engine import AuditContext, run_check
    from auditor.inputs import load_dataset

    t = time.perf_counter()
    train = load_dataset(f"{directory}/train.parquet", "train", label="label")
    test = load_dataset(f"{directory}/test.parquet", "test", label="label")
    load_s = time.perf_counter() - t
    ctx = AuditContext(policy=_policy(exact_pairs), seed=0, train=train, test=test)
    t = time.perf_counter()
    r = run_check("leakage.near_duplicates", ctx)
    return _result(r, time.perf_counter() - t, load_s)


def _pr(found: set, truth: set) -> tuple[float, float]:
    hit = len(found & truth)
    recall = hit / len(truth) if truth else float("nan")
    precision = hit / len(found) if found else (1.0 if not truth else 0.0)
    return recall, precision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=200_000, help="training rows")
    ap.add_argument("--test-rows", type=int, default=None, help="test rows (default rows / 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-exact", action="store_true", help="skip the exact reference (slow beyond ~500k rows)")
    ap.add_argument("--reuse-exact", action="store_true",
                    help="reuse the exact reference of an earlier run on the same data (it does not depend on Spark)")
    ap.add_argument("--skip-spark", action="store_true", help="measure only the pandas engine (and the exact reference)")
    ap.add_argument("--driver-memory", default="3g")
    args = ap.parse_args()
    n_test = args.test_rows or max(1000, args.rows // 10)
    plan = make(args.rows, n_test, args.seed)
    planted = {int(k): v for k, v in plan["planted"].items()}
    print(f"{cores()} cores; {args.rows:,} train x {n_test:,} test rows, 17 numeric columns; "
          f"{len(planted)} near-copies planted, {len(plan['exact_copies'])} exact copies", flush=True)
    saved = Path(plan["dir"]) / "exact.json"
    runs = {} if args.skip_spark else {"spark": measure("spark_near_duplicates", "run_spark", plan["dir"],
                                                        args.driver_memory)}
    if args.reuse_exact and saved.exists():
        runs["exact"] = json.loads(saved.read_text())
        print(f"(exact reference reused from {saved})")
    elif not args.skip_exact:
        runs["exact"] = measure("spark_near_duplicates", "run_pandas", plan["dir"], 1e15)
        if "error" not in runs["exact"]:
            saved.write_text(json.dumps(runs["exact"]))
    runs["pandas"] = measure("spark_near_duplicates", "run_pandas", plan["dir"], None)
    for name, r in runs.items():
        if "error" in r:
            print(f"{name}: failed: {r['error']}")
        else:  # JSON turned the test rows into strings
            r["matches"] = {int(k): int(v) for k, v in r["matches"].items()}
    ok = {k: v for k, v in runs.items() if "error" not in v}
    exact = set(ok["exact"]["matches"]) if "exact" in ok else None
    print(f"\n{'method':8s} {'search':7s} {'check s':>8s} {'wall s':>7s} {'flagged':>7s} {'vs exact R / P':>15s} "
          f"{'vs planted R / P':>17s} {'source row':>10s}")
    for name, r in ok.items():
        found = {int(k) for k in r["matches"]}
        vs_exact = "%.4f / %.4f" % _pr(found, exact) if exact is not None else "-"
        rec, prec = _pr(found, set(planted))
        src_ok = sum(1 for t in found & set(planted) if int(r["matches"][t]) == planted[t]["train_row"])
        print(f"{name:8s} {r['metrics']['search'] or '-':7s} {r['seconds']:8.1f} {r['wall_s']:7.1f} {len(found):7d} "
              f"{vs_exact:>15s} {rec:8.4f} / {prec:.4f} {src_ok / max(len(found & set(planted)), 1):10.4f}")
    print("\nrecall on planted rows by noise tier (x each column's std):")
    for tier in TIERS:
        rows = {t for t, v in planted.items() if v["tier"] == tier}
        cells = []
        for name, r in ok.items():
            found = {int(k) for k in r["matches"]}
            cells.append(f"{name} {len(found & rows) / len(rows):.4f}")
        print(f"  {tier:g}: {len(rows)} rows: " + ", ".join(cells))
    if "spark" in ok:
        m = ok["spark"]["metrics"]
        print(f"\nspark: {m['lsh_tables']} tables x {m['lsh_projections_per_table']} projections, planned recall at "
              f"the radius {m['lsh_recall_at_radius']}, {m['pairs_compared']:,} candidate pairs; guard "
              f"{m['distance_guard']:.4g}; {m['rows_searched_exactly']} rows searched exactly (second neighbour "
              f"beyond the radius); load {ok['spark']['load_seconds']} s")
    if "exact" in ok and "spark" in ok:
        same = [k for k in ("distance_guard", "reference_nn_distance_q25", "twonn_dimension", "weibull_shape",
                            "distinct_train_rows", "exact_copies_excluded")
                if ok["exact"]["metrics"][k] == ok["spark"]["metrics"][k]]
        print(f"null model metrics equal to the exact run's: {', '.join(same)}")
        common = set(ok["exact"]["matches"]) & set(ok["spark"]["matches"])
        agree = sum(1 for t in common if ok["exact"]["matches"][t] == ok["spark"]["matches"][t])
        print(f"same matched training row as the exact search: {agree} of {len(common)}")
    (Path(plan["dir"]) / "results.json").write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
