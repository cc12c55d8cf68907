"""Exact train/test leakage at scale: the auditor's chunked hashing against a plain pandas merge.

    python benchmarks/bench_exact.py [--train-rows 10000000] [--test-rows 1000000] [--skip-pandas]

Writes a 20-column Parquet pair (12 float, 4 integer, 4 string columns; a label) with 1 % of the test
rows copied from training, then runs each method in its own fresh process and reports wall time,
peak memory and the copies found. Data is cached under benchmarks/.data (BENCH_DATA overrides).
"""

from __future__ import annotations

import argparse
import json
import time

from _common import DATA, cores, measure

N_FLOAT, N_INT, N_STR = 12, 4, 4


def make(train_rows: int, test_rows: int, seed: int = 0) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = DATA / f"exact_{train_rows}_{test_rows}"
    meta = out / "planted.json"
    if meta.exists():
        return json.loads(meta.read_text())
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cities = np.array([f"city {i:03d}" for i in range(500)])
    words = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"])

    def columns(n: int, r) -> dict:
        cols = {f"f{i:02d}": r.normal(size=n) * (i + 1) for i in range(N_FLOAT)}
        cols.update({f"i{i}": r.integers(0, 10 ** (i + 3), n) for i in range(N_INT)})
        cols.update({"city": cities[r.integers(0, len(cities), n)], "kind": words[r.integers(0, 8, n)],
                     "code": np.char.add("C", r.integers(0, 100_000, n).astype(str)),
                     "flag": np.where(r.random(n) < 0.5, "yes", "no")})
        cols["label"] = r.integers(0, 2, n)
        return cols

    block = 1_000_000
    writer = None
    for start in range(0, train_rows, block):
        n = min(block, train_rows - start)
        table = pa.table(columns(n, np.random.default_rng([seed, start])))
        writer = writer or pq.ParquetWriter(out / "train.parquet", table.schema)
        writer.write_table(table, row_group_size=block)
    writer.close()
    test = columns(test_rows, np.random.default_rng([seed, 7_777_777]))  # not the first training block
    n_copy = test_rows // 100
    rows = np.sort(rng.choice(test_rows, n_copy, replace=False))
    src = np.sort(rng.choice(train_rows, n_copy, replace=False))
    train = pq.read_table(out / "train.parquet").take(src)
    for name in test:
        if name != "label":
            test[name][rows] = train.column(name).to_numpy()
    pq.write_table(pa.table(test), out / "test.parquet", row_group_size=block)
    planted = {"dir": str(out), "test_rows": rows.tolist(), "train_rows": src.tolist()}
    meta.write_text(json.dumps(planted))
    return planted


def run_auditor(directory: str) -> dict:
    from auditor.checks.leakage_hashing import exact_leakage_files

    t = time.perf_counter()
    m = exact_leakage_files(f"{directory}/train.parquet", f"{directory}/test.parquet", exclude=["label"])
    return {"seconds": round(time.perf_counter() - t, 2), "pairs": [m.test_rows.tolist(), m.train_rows.tolist()]}


def run_pandas(directory: str) -> dict:
    import pandas as pd

    t = time.perf_counter()
    train = pd.read_parquet(f"{directory}/train.parquet").drop(columns="label")
    test = pd.read_parquet(f"{directory}/test.parquet").drop(columns="label")
    keys = list(test.columns)
    train["train_row"] = range(len(train))
    test["test_row"] = range(len(test))
    merged = test.merge(train.drop_duplicates(subset=keys), on=keys, how="inner")
    merged = merged.sort_values("test_row")
    return {"seconds": round(time.perf_counter() - t, 2),
            "pairs": [merged["test_row"].tolist(), merged["train_row"].tolist()]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-rows", type=int, default=10_000_000)
    ap.add_argument("--test-rows", type=int, default=1_000_000)
    ap.add_argument("--skip-pandas", action="store_true")
    args = ap.parse_args()
    t = time.perf_counter()
    planted = make(args.train_rows, args.test_rows)
    print(f"data: {args.train_rows:,} train x {args.test_rows:,} test rows, {N_FLOAT + N_INT + N_STR} feature "
          f"columns + label, {len(planted['test_rows']):,} planted copies ({time.perf_counter() - t:.0f} s to make/load); "
          f"{cores()} cores")
    truth = set(zip(planted["test_rows"], planted["train_rows"]))
    results = {"auditor (chunked Parquet hashing)": measure("bench_exact", "run_auditor", planted["dir"])}
    if not args.skip_pandas:
        results["pandas read_parquet + merge"] = measure("bench_exact", "run_pandas", planted["dir"])
    print(f"{'method':36s} {'wall s':>8s} {'check s':>8s} {'peak MB':>8s} {'found':>8s} {'correct':>8s}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:36s} failed: {r['error']}")
            continue
        pairs = set(zip(*r["pairs"]))
        print(f"{name:36s} {r['wall_s']:8.1f} {r['seconds']:8.1f} {r['peak_rss_mb']:8d} {len(pairs):8d} "
              f"{len(pairs & truth):8d}")
    ok = [r for r in results.values() if "error" not in r]
    if len(ok) == 2:
        a, b = ok
        print(f"ratio pandas / auditor: wall {b['wall_s'] / a['wall_s']:.1f}x, peak memory {b['peak_rss_mb'] / a['peak_rss_mb']:.1f}x")


if __name__ == "__main__":
    main()
