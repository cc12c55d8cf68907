"""The Spark engine at scale: `auditor run --engine spark` on a table larger than pandas can hold here, with
the driver's memory bounded, beside `--engine pandas` on the largest size it manages.

    python benchmarks/spark_scale.py --rows 50000000 --test-rows 250000 \\
        --spark-sizes 1000000,10000000,50000000 --pandas-sizes 1000000,5000000,10000000,20000000

1. Writes a realistic table as Parquet part files, one chunk at a time (never the whole table in memory):
   ids, a customer id, a timestamp, 8 numeric features, a categorical, a short free-text note and a label,
   with problems planted at known rows (recorded in ``planted.json``): duplicate rows, values out of range,
   test rows copied from training, near-copies, shared customers, test times inside the training period
   and copied notes. Every size ``N`` is the first ``N / chunk`` part files, so each size holds the same
   planted test problems (all their training sources are in the first chunk).
2. Audits each size in a fresh ``auditor run`` subprocess with a model-free policy that enables the
   dataset-level checks; Spark with ``spark: {master: local[2], driver_memory: 2g}`` in audit.yaml (the
   part-file folder), pandas on one Parquet file with the same rows under an address-space cap (``prlimit
   --as``), stopping at the first size it cannot finish.
3. Samples the resident memory of the whole process tree (Python driver + JVM) every 0.5 s from /proc, and
   kills the tree if it exceeds ``--tree-cap-gib`` (the machine is shared; nothing may swap it to death).
4. Compares each engine's flagged rows with the planted ones and with the other engine's at the sizes both
   finish; prints a markdown table and writes JSON to benchmarks/results/.

Generated data goes to benchmarks/.data/spark_scale (``--data``); ``--clean`` deletes it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_DATA = Path(os.environ.get("BENCH_DATA", ROOT / "benchmarks" / ".data")) / "spark_scale"

SEGMENTS = ["retail", "smb", "enterprise", "public", "education", "health", "finance", "travel",
            "media", "energy", "logistics", "other"]
SEGMENT_P = [0.3, 0.2, 0.1, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03, 0.03, 0.02, 0.02]
FLOATS = ["amount", "balance", "income", "score_a", "score_b", "velocity"]
INTS = ["age", "n_items"]
POOL = 5_000                      # first rows of chunk 0: the originals the planted duplicates copy
N_CUSTOMERS = 10_000_000          # training customer ids are drawn from [0, N_CUSTOMERS)
TEST_CUSTOMER0 = 1_000_000_000    # test customer ids start here (disjoint from training)
TEST_ID0 = 10**12
US = 1_000_000
TRAIN_T0, TRAIN_T1 = 1_577_836_800 * US, 1_735_689_600 * US   # 2020-01-01 .. 2025-01-01 (UTC), microseconds
TEST_T0, TEST_T1 = 1_735_862_400 * US, 1_767_225_600 * US     # 2025-01-03 .. 2026-01-01
NOTE_WORDS = (8, 12)              # a note has 8-12 words: every note is at least one 8-gram
PLANTED_TEST = {"exact": 500, "near": 300, "group": 300, "temporal": 300, "contamination": 300, "invalid": 2}
CHECKS = ["provenance.integrity", "data.validation", "data.duplicates", "data.class_balance",
          "leakage.exact_duplicates", "leakage.near_duplicates", "leakage.group", "leakage.temporal",
          "contamination.ngram"]


# ----------------------------------------------------------------------------- data


def _schema():
    import pyarrow as pa

    fields = [("id", pa.int64()), ("customer_id", pa.int64()), ("ts", pa.timestamp("us", tz="UTC"))]
    fields += [(c, pa.float64()) for c in FLOATS] + [(c, pa.int64()) for c in INTS]
    fields += [("segment", pa.string()), ("note", pa.string()), ("label", pa.int64())]
    return pa.schema(fields)


def _vocabulary(seed: int):
    """4,096 pronounceable made-up words (deterministic): the notes' vocabulary."""
    import numpy as np

    rng = np.random.default_rng([seed, 99])
    cons, vow = list("bcdfghjklmnprstvwz"), list("aeiou")
    words: set[str] = set()
    while len(words) < 4096:
        k = int(rng.integers(2, 4))
        words.add("".join(rng.choice(cons) + rng.choice(vow) for _ in range(k)))
    return np.array(sorted(words))


def _notes(rng, n: int, vocab):
    """``n`` notes of 8-12 random words, built with Arrow kernels (no Python loop over rows)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    lo, hi = NOTE_WORDS
    length = rng.integers(lo, hi + 1, n)
    words = pa.array(vocab)
    cols = []
    for j in range(hi):
        idx = pa.array(rng.integers(0, len(vocab), n), mask=length <= j)  # masked: no word j in this note
        cols.append(pc.take(words, idx))
    return pc.binary_join_element_wise(*cols, " ", null_handling="skip")


def _base(rng, n: int, ids, customers, t0: int, t1: int, vocab) -> dict:
    """Ordinary rows: the columns as NumPy/Arrow arrays."""
    import numpy as np

    seg = rng.choice(len(SEGMENTS), n, p=SEGMENT_P)
    cols = {
        "id": ids, "customer_id": customers, "ts": rng.integers(t0, t1, n),
        "amount": np.round(rng.lognormal(3.0, 1.0, n), 2),
        "balance": rng.normal(2_000, 800, n),
        "income": rng.lognormal(10.5, 0.5, n),
        "score_a": rng.normal(0, 1, n),
        "score_b": rng.beta(2, 5, n),
        "velocity": rng.exponential(3.0, n),
        "age": rng.integers(18, 91, n),
        "n_items": rng.poisson(4, n),
        "segment": seg,
        "note": _notes(rng, n, vocab),
    }
    z = 0.9 * cols["score_a"] - 0.25 * cols["velocity"] + 0.4 * (seg < 3) - 0.6
    cols["label"] = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    return cols


def _table(cols: dict):
    import numpy as np
    import pyarrow as pa

    arrays = []
    for f in _schema():
        v = cols[f.name]
        if f.name == "segment":
            v = np.array(SEGMENTS)[v] if not isinstance(v, pa.Array) else v
        arrays.append(v if isinstance(v, (pa.Array, pa.ChunkedArray)) else pa.array(v, type=f.type))
    return pa.Table.from_arrays(arrays, schema=_schema())


def _copy_rows(dst: dict, dst_rows, src: dict, src_rows, names) -> None:
    """``dst[c][dst_rows] = src[c][src_rows]`` for NumPy and Arrow columns alike."""
    import numpy as np
    import pyarrow as pa

    for c in names:
        if isinstance(dst[c], pa.Array):
            values = dst[c].to_numpy(zero_copy_only=False).astype(object)
            values[dst_rows] = np.asarray(src[c].take(pa.array(src_rows)).to_pylist(), dtype=object)
            dst[c] = pa.array(values, type=pa.string())
        else:
            dst[c][dst_rows] = np.asarray(src[c])[src_rows]


def generate(data: Path, rows: int, test_rows: int, chunk: int, seed: int) -> dict:
    """Write train part files and test.parquet under ``data``; returns the planted rows (also planted.json)."""
    import numpy as np
    import pyarrow.parquet as pq

    meta = {"rows": rows, "test_rows": test_rows, "chunk": chunk, "seed": seed, "version": 1}
    done = data / "planted.json"
    if done.exists():
        planted = json.loads(done.read_text())
        if planted["meta"] == meta:
            print(f"data: reusing {data}", file=sys.stderr)
            return planted
    if rows % chunk or chunk < 4 * POOL:
        raise SystemExit(f"--rows must be a multiple of --chunk, and --chunk at least {4 * POOL}")
    shutil.rmtree(data, ignore_errors=True)
    (data / "train").mkdir(parents=True)
    vocab = _vocabulary(seed)
    features = FLOATS + INTS + ["segment", "note", "label"]
    dups_per_chunk, bad_per_chunk = chunk // 5_000, 3
    duplicates: list[list[int]] = []   # [row, row it repeats]
    invalid: list[int] = []
    t = time.perf_counter()
    chunk0 = None
    for c in range(rows // chunk):
        rng = np.random.default_rng([seed, 1, c])
        first = c * chunk
        cols = _base(rng, chunk, np.arange(first, first + chunk), rng.integers(0, N_CUSTOMERS, chunk),
                     TRAIN_T0, TRAIN_T1, vocab)
        lo = POOL if c == 0 else 0
        pos = np.sort(rng.choice(np.arange(lo, chunk), dups_per_chunk + bad_per_chunk, replace=False))
        rng.shuffle(pos)
        dup, bad = np.sort(pos[:dups_per_chunk]), np.sort(pos[dups_per_chunk:])
        if c == 0:
            chunk0 = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in cols.items()}
        src = rng.integers(0, POOL, len(dup))
        _copy_rows(cols, dup, chunk0, src, features)
        cols["amount"][bad] = -np.abs(cols["amount"][bad]) - 1.0
        if c == 0:
            chunk0 = cols  # the written chunk: sources of the test set's planted rows
        duplicates += [[int(first + d), int(s)] for d, s in zip(dup, src)]
        invalid += [int(first + b) for b in bad]
        pq.write_table(_table(cols), data / "train" / f"part-{c:05d}.parquet", row_group_size=chunk // 4,
                       compression="zstd")
        print(f"data: train part {c + 1}/{rows // chunk} ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    planted = _generate_test(data, test_rows, chunk0, set(d for d, _ in duplicates if d < chunk) | set(invalid),
                             vocab, seed)
    planted.update({"meta": meta, "train": {"duplicates": duplicates, "invalid_amount": invalid}})
    done.write_text(json.dumps(planted))
    return planted


def _generate_test(data: Path, n: int, chunk0: dict, taken: set, vocab, seed: int) -> dict:
    """The test set: fresh rows, plus the planted ones copied (wholly or partly) from the first training chunk."""
    import numpy as np
    import pyarrow.parquet as pq

    rng = np.random.default_rng([seed, 2])
    cols = _base(rng, n, np.arange(TEST_ID0, TEST_ID0 + n), rng.integers(TEST_CUSTOMER0, TEST_CUSTOMER0 + n // 2, n),
                 TEST_T0, TEST_T1, vocab)
    total = sum(PLANTED_TEST.values())
    pos = rng.choice(n, total, replace=False)
    usable = np.setdiff1d(np.arange(POOL, len(chunk0["id"])), np.fromiter(taken, dtype=np.int64))
    src = rng.choice(usable, total, replace=False)  # distinct sources: no two planted test rows are equal
    out, at = {}, 0
    for kind, k in PLANTED_TEST.items():
        out[kind] = (np.sort(pos[at:at + k]), src[at:at + k])
        at += k
    rows, s = out["exact"]
    _copy_rows(cols, rows, chunk0, s, [c for c in cols if c != "id"])
    rows, s = out["near"]
    _copy_rows(cols, rows, chunk0, s, INTS + ["segment", "label"])
    for c in FLOATS:  # 1e-3 standard deviations of noise on every float column
        col = np.asarray(chunk0[c])
        cols[c][rows] = col[s] + rng.normal(0, 1e-3 * float(np.std(col[:100_000])), len(rows))
    rows, s = out["group"]
    _copy_rows(cols, rows, chunk0, s, ["customer_id"])
    rows, _ = out["temporal"]
    cols["ts"][rows] = rng.integers(TRAIN_T0, TRAIN_T1, len(rows))
    rows, s = out["contamination"]
    _copy_rows(cols, rows, chunk0, s, ["note"])
    rows, _ = out["invalid"]
    cols["amount"][rows] = -1.0 - cols["amount"][rows]
    pq.write_table(_table(cols), data / "test.parquet", row_group_size=max(n // 4, 1), compression="zstd")
    return {"test": {k: [[int(r), int(x)] for r, x in zip(*v)] for k, v in out.items()}}


def expected(planted: dict, n_train: int) -> dict:
    """The rows each check should flag at training size ``n_train``: {check: {dataset: sorted rows}}."""
    t = {k: {r for r, _ in v} for k, v in planted["test"].items()}
    dups = sorted(r for r, _ in planted["train"]["duplicates"] if r < n_train)
    return {
        "data.validation": {"train": sorted(r for r in planted["train"]["invalid_amount"] if r < n_train),
                            "test": sorted(t["invalid"])},
        "data.duplicates": {"train": dups, "test": []},
        "leakage.exact_duplicates": {"test": sorted(t["exact"])},
        "leakage.near_duplicates": {"test": sorted(t["near"])},
        # a copied row carries its customer, time and note with it
        "leakage.group": {"test": sorted(t["group"] | t["exact"])},
        "leakage.temporal": {"test": sorted(t["temporal"] | t["exact"])},
        "contamination.ngram": {"test": sorted(t["contamination"] | t["exact"])},
    }


def spark_input(data: Path, workdir: Path, n: int, chunk: int) -> Path:
    """A folder of hard links to the first ``n / chunk`` part files: the size-``n`` training set for Spark."""
    folder = workdir / f"train-{n}.parts"
    parts = sorted((data / "train").glob("part-*.parquet"))[: n // chunk]
    if not folder.exists():
        folder.mkdir()
        for p in parts:
            os.link(p, folder / p.name)
    return folder


def pandas_input(data: Path, workdir: Path, n: int, chunk: int) -> Path:
    """One Parquet file with the same rows (the pandas engine reads single files), copied part by part."""
    import pyarrow.parquet as pq

    out = workdir / f"train-{n}.parquet"
    if out.exists():
        return out
    tmp = out.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, _schema(), compression="zstd") as w:
        for p in sorted((data / "train").glob("part-*.parquet"))[: n // chunk]:
            w.write_table(pq.read_table(p), row_group_size=chunk // 4)
    tmp.rename(out)
    return out


# ----------------------------------------------------------------------------- policy and runs


POLICY = """\
# Model-free policy for the Spark scale benchmark: the dataset-level checks, group and time columns named.
name: spark-scale-benchmark
version: "1"
catalogs: [nist-ai-rmf]
primary_framework: nist-ai-rmf
fail_on: high
seed: 0
label: label
exclude: [id, customer_id, ts]
sample: {{rows: {sample_rows}}}
checks:
  provenance.integrity: {{}}
  data.validation:
    params:
      expectations:
        all:
          - expect_column_values_to_be_between: {{column: amount, min_value: 0, max_value: 10000000}}
          - expect_column_values_to_not_be_null: {{column: customer_id}}
          - expect_column_values_to_be_in_set: {{column: segment, value_set: {segments}}}
          - expect_column_values_to_be_between: {{column: age, min_value: 0, max_value: 120}}
  data.duplicates: {{}}
  data.class_balance: {{}}
  leakage.exact_duplicates: {{}}
  leakage.near_duplicates: {{params: {{mode: table, ignore: [note]}}}}
  leakage.group: {{params: {{column: customer_id}}}}
  leakage.temporal: {{params: {{column: ts, min_gap: 1D}}}}
  contamination.ngram: {{params: {{n: 8}}}}
"""


def write_policy(path: Path, sample_rows: int, near: bool = True, only: list[str] | None = None) -> Path:
    """The policy above; without near-duplicates (``--near-max-rows``) or with only some checks (``--only``)."""
    import yaml

    text = POLICY.format(sample_rows=sample_rows, segments=json.dumps(SEGMENTS))
    doc = yaml.safe_load(text)
    off = [c for c in doc["checks"] if (c == "leakage.near_duplicates" and not near) or (only and c not in only)]
    for check in off:
        doc["checks"][check]["enabled"] = False
    path.write_text(text if not off else POLICY.splitlines()[0] + "\n" + yaml.safe_dump(doc, sort_keys=False))
    return path


def write_config(path: Path, master: str, driver_memory: str, local_dir: Path, conf: list[str]) -> Path:
    """audit.yaml for the Spark runs: the driver (and, on local[N], the executors inside it) bounded."""
    import yaml

    extra = dict(kv.split("=", 1) for kv in conf)
    spark = {"master": master, "driver_memory": driver_memory, "conf": {"spark.local.dir": str(local_dir), **extra}}
    path.write_text(yaml.safe_dump({"spark": spark}, sort_keys=False))
    return path


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _rss(pid: int) -> tuple[int, int, str]:
    """(resident bytes, virtual bytes, command name) of a process; (0, 0, '') once it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            size, resident = (int(x) for x in f.read().split()[:2])
        with open(f"/proc/{pid}/comm") as f:
            name = f.read().strip()
        page = os.sysconf("SC_PAGE_SIZE")
        return resident * page, size * page, name
    except (OSError, IndexError, ValueError):
        return 0, 0, ""


def _hwm(pid: int) -> int:
    """A process's own resident high-water mark (VmHWM, bytes): catches peaks between two samples."""
    try:
        with open(f"/proc/{pid}/status") as f:
            line = next((ln for ln in f if ln.startswith("VmHWM:")), None)
        return int(line.split()[1]) * 1024 if line else 0
    except (OSError, ValueError):
        return 0


def run_measured(cmd: list[str], cwd: Path, log: Path, tree_cap: int, timeout: float) -> dict:
    """Run ``cmd`` in its own session; sample the tree's RSS every 0.5 s; kill it above ``tree_cap`` bytes."""
    started = time.perf_counter()
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, start_new_session=True)
        peak = peak_java = peak_python = peak_vsz = 0
        timeline, killed, hwm = [], None, {}
        while proc.poll() is None:
            pids = _tree(proc.pid)
            for p in pids:
                hwm[p] = max(hwm.get(p, 0), _hwm(p))
            per = [_rss(p) for p in pids]
            total = sum(b for b, _, _ in per)
            java = sum(b for b, _, n in per if n == "java")
            peak, peak_java = max(peak, total), max(peak_java, java)
            peak_python = max(peak_python, sum(b for b, _, n in per if n.startswith("python")))
            peak_vsz = max([peak_vsz] + [v for _, v, n in per if n.startswith("python")])
            elapsed = time.perf_counter() - started
            if not timeline or elapsed - timeline[-1][0] >= 5:
                timeline.append([round(elapsed, 1), round(total / 2**20)])
            if total > tree_cap or elapsed > timeout:
                killed = f"tree RSS {total / 2**30:.1f} GiB > cap" if total > tree_cap else f"timeout {timeout:.0f} s"
                for pid in [proc.pid, *_tree(proc.pid)]:  # the group, and any descendant in another group (JVM)
                    try:
                        os.killpg(pid, signal.SIGKILL) if pid == proc.pid else os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                proc.wait()
                break
            time.sleep(0.5)
    wall = time.perf_counter() - started
    return {"returncode": proc.returncode, "wall_s": round(wall, 1), "peak_rss_mib": round(peak / 2**20),
            "peak_java_rss_mib": round(peak_java / 2**20), "peak_python_rss_mib": round(peak_python / 2**20),
            "peak_python_virtual_mib": round(peak_vsz / 2**20),
            # an upper bound of the tree's peak: each process's own peak, summed (they need not coincide)
            "sum_of_process_peaks_mib": round(sum(hwm.values()) / 2**20),
            "killed_by_harness": killed, "rss_timeline_mib": timeline}


def _failure_line(err: Path) -> str | None:
    """The line that says how a run failed (MemoryError, OutOfMemoryError, bad_alloc, ...), else the last one."""
    lines = [ln.strip() for ln in err.read_text(errors="replace").splitlines() if ln.strip()]
    for key in ("MemoryError", "OutOfMemoryError", "bad_alloc", "Cannot allocate memory", "Killed", "Error"):
        hit = [ln for ln in lines if key in ln]
        if hit:
            return hit[-1][:300]
    return lines[-1][:300] if lines else None


def flagged(report: dict) -> dict:
    """{check: {dataset: sorted rows}}: every row any finding of the check names."""
    out: dict = {}
    for c in report["checks"]:
        per: dict = {}
        for f in c.get("findings", []):
            if f.get("rows") is not None:
                per.setdefault(f.get("dataset") or "", set()).update(f["rows"])
        out[c["id"]] = {k: sorted(v) for k, v in per.items()}
    return out


def summarise(report: dict, want: dict) -> dict:
    """Per check: status, seconds, native or on a sample, and flagged rows against the planted ones."""
    got = flagged(report)
    checks = {}
    for c in report["checks"]:
        entry = {"status": c["status"], "duration_s": c.get("duration_s"),
                 "ran_on": "sample" if c.get("sample") else "full data"}
        if c.get("reason"):
            entry["reason"] = c["reason"][:300]
        if c["id"] in want:
            entry["planted"] = {}
            for ds, rows in want[c["id"]].items():
                mine = set(got.get(c["id"], {}).get(ds, []))
                entry["planted"][ds] = {"expected": len(rows), "found": len(mine & set(rows)),
                                        "missed": len(set(rows) - mine), "extra": len(mine - set(rows))}
        checks[c["id"]] = entry
    return checks


def audit(engine: str, size: int, train: Path, test: Path, workdir: Path, args, want: dict) -> dict:
    """One measured `auditor run` at one size; the result row."""
    out = workdir / f"{engine}-{size}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    near = args.near_max_rows is None or size <= args.near_max_rows
    policy = workdir / ("policy.yaml" if near else "policy-without-near.yaml")
    write_policy(policy, args.sample_rows, near, args.only)
    cmd = [sys.executable, "-m", "auditor", "run", "--engine", engine, "--policy", str(policy),
           "--train", str(train), "--test", str(test), "--label", "label", "--out", str(out / "report"),
           "--format", "json"]
    if engine == "spark":
        cmd[4:4] = ["--config", str(workdir / "audit.yaml")]
    elif args.pandas_as_gib and shutil.which("prlimit"):
        cmd = ["prlimit", f"--as={int(args.pandas_as_gib * 2**30)}", "--", *cmd]
    print(f"run: {engine} {size:,} rows: {' '.join(cmd)}", file=sys.stderr)
    m = run_measured(cmd, workdir, out / "auditor", int(args.tree_cap_gib * 2**30), args.timeout)
    row = {"engine": engine, "rows": size, "test_rows": args.test_rows, "command": " ".join(cmd),
           "near_duplicates_enabled": near, **m}
    if engine == "spark":
        row["driver_memory"] = args.driver_memory
        row["master"] = args.master
    else:
        row["address_space_cap_gib"] = args.pandas_as_gib if shutil.which("prlimit") else None
    row["tree_rss_cap_gib"] = args.tree_cap_gib
    report_path = out / "report" / "report.json"
    if m["returncode"] in (0, 1) and report_path.exists():
        report = json.loads(report_path.read_text())
        row["checks"] = summarise(report, want)
        # start-up (interpreter, JVM), reading and counting the inputs, and writing the report
        row["outside_checks_s"] = round(m["wall_s"] - sum(v["duration_s"] or 0 for v in row["checks"].values()), 1)
        row["flagged"] = flagged(report)
        errored = [k for k, v in row["checks"].items() if v["status"] == "error"]
        oom = [k for k in errored if "MemoryError" in row["checks"][k].get("reason", "")]
        if oom:  # the engine records a check that ran out of memory as an error: the audit did not complete
            row["result"] = "failed"
            row["failure"] = f"{len(oom)} check(s) ran out of memory: " + "; ".join(
                f"{k}: {row['checks'][k]['reason'][:120]}" for k in oom)
        else:
            row["result"] = "completed" if not errored else f"completed, {len(errored)} check(s) errored: {', '.join(errored)}"
    else:
        row["result"] = "failed"
        row["failure"] = m["killed_by_harness"] or _failure_line(out / "auditor.err")
    print(f"     {row['result']} in {m['wall_s']} s, tree peak {m['peak_rss_mib']:,} MiB", file=sys.stderr)
    return row


def agreement(a: dict, b: dict) -> dict:
    """Per check and dataset: do both engines flag the same rows (and how many differ)?"""
    out = {}
    for check in sorted(set(a["flagged"]) | set(b["flagged"])):
        fa, fb = a["flagged"].get(check, {}), b["flagged"].get(check, {})
        for ds in sorted(set(fa) | set(fb)):
            x, y = set(fa.get(ds, [])), set(fb.get(ds, []))
            out[f"{check}/{ds}"] = {"same": x == y, "pandas": len(x), "spark": len(y), "only_pandas": len(x - y),
                                    "only_spark": len(y - x)}
    return out


# ----------------------------------------------------------------------------- output


def _gib(mib: int) -> str:
    return f"{mib / 1024:.1f}"


def markdown(results: dict) -> str:
    lines = ["| train rows | engine | wall time | peak RSS of the tree (GiB) | of which JVM | memory bound | result |",
             "|---:|---|---:|---:|---:|---|---|"]
    runs = [r for r in results["runs"] if not r.get("superseded")]
    for r in runs:
        cap = f"tree RSS <= {r['tree_rss_cap_gib']:g} GiB" if r.get("tree_rss_cap_gib") else ""
        bound = (f"driver {r['driver_memory']} ({r['master']})" if r["engine"] == "spark"
                 else ", ".join(x for x in (cap, f"address space {r['address_space_cap_gib']:g} GiB"
                                            if r.get("address_space_cap_gib") else "") if x) or "none")
        result = r["result"] if r["result"] != "failed" else f"failed (exit {r['returncode']}): {r['failure']}"
        with_planted = {k: v["planted"] for k, v in r.get("checks", {}).items() if "planted" in v}
        off = [f"{k.split('.', 1)[1]} {sum(d['found'] for d in v.values())}/{sum(d['expected'] for d in v.values())}"
               + (f" +{sum(d['extra'] for d in v.values())} others" if any(d["extra"] for d in v.values()) else "")
               for k, v in with_planted.items() if any(d["missed"] or d["extra"] for d in v.values())]
        if with_planted:
            result += (f"; planted rows: all found by the {len(with_planted)} checks, nothing else flagged" if not off
                       else "; planted rows found: " + ", ".join(off)
                       + (f" (the other {len(with_planted) - len(off)} checks: all, exactly)" if len(off) < len(with_planted) else ""))
        lines.append(f"| {r['rows']:,} | {r['engine']} | {r['wall_s'] / 60:.1f} min | {_gib(r['peak_rss_mib'])} | "
                     f"{_gib(r['peak_java_rss_mib']) if r['engine'] == 'spark' else '-'} | {bound} | {result} |")
    per_check = ["", "| train rows | engine | start-up, reading, report | "
                 + " | ".join(c.split(".", 1)[1] for c in CHECKS) + " |", "|---:|---|---:|" + "---:|" * len(CHECKS)]
    for r in runs:
        if "checks" not in r:
            continue
        cells = []
        for c in CHECKS:
            v = r["checks"].get(c)
            cells.append("-" if v is None else f"{v['duration_s']:.0f} s {v['status']}"
                         + (" (sample)" if v["ran_on"] == "sample" else ""))
        outside = r.get("outside_checks_s")
        per_check.append(f"| {r['rows']:,} | {r['engine']} | {'-' if outside is None else f'{outside:.0f} s'} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines + per_check)


def _native_checks() -> list[str]:
    """The policy's checks that run on Spark over the whole data in this checkout (the rest: on a sample)."""
    out = subprocess.run([sys.executable, "-c", "from auditor.registry import all_checks; import json; print(json.dumps("
                          "sorted(k for k, c in all_checks().items() if getattr(c, 'spark_native', False))))"],
                         capture_output=True, text=True, cwd=ROOT)
    return [c for c in json.loads(out.stdout or "[]") if c in CHECKS]


def _physical_gib() -> float:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=50_000_000, help="largest training size (rows generated)")
    ap.add_argument("--test-rows", type=int, default=250_000)
    ap.add_argument("--chunk", type=int, default=1_000_000, help="rows per part file (sizes are multiples)")
    ap.add_argument("--spark-sizes", default=None, help="comma-separated training sizes for Spark (default: --rows)")
    ap.add_argument("--pandas-sizes", default="1000000,5000000,10000000,20000000",
                    help="increasing sizes for pandas; stops at the first that fails ('' for none)")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="2g")
    ap.add_argument("--pandas-as-gib", type=float, default=round(_physical_gib()),
                    help="prlimit --as for the pandas runs (default: the machine's memory; 0: none). Address space "
                         "runs 5-7 GiB above resident memory here, so this is a backstop, not the cap")
    ap.add_argument("--tree-cap-gib", type=float, default=14.0,
                    help="kill a run whose process tree's resident memory exceeds this (the machine is shared)")
    ap.add_argument("--timeout", type=float, default=3 * 3600, help="seconds before a run is killed")
    ap.add_argument("--sample-rows", type=int, default=50_000, help="policy sample.rows (non-native checks on Spark)")
    ap.add_argument("--near-max-rows", type=int, default=None,
                    help="disable leakage.near_duplicates above this training size (when it is too slow there)")
    ap.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                    help="more Spark configuration for audit.yaml (repeatable)")
    ap.add_argument("--only", type=lambda t: t.split(","), default=None,
                    help="enable only these checks (comma-separated ids)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--local-dir", type=Path, default=Path("/tmp/spark-scale-local"), help="spark.local.dir")
    ap.add_argument("--tag", default="", help="suffix of the results file name")
    ap.add_argument("--previous", type=Path, action="append", default=[],
                    help="a results JSON of an earlier invocation whose runs to include (and compare with)")
    ap.add_argument("--clean", action="store_true", help="delete the generated data at the end")
    ap.add_argument("--render", type=Path, help="only print the tables of an existing results JSON")
    args = ap.parse_args()
    if args.render:
        print(markdown(json.loads(args.render.read_text())))
        return

    sizes = lambda text: [int(s) for s in text.split(",") if s.strip()]  # noqa: E731
    spark_sizes = sizes(args.spark_sizes) if args.spark_sizes is not None else [args.rows]
    pandas_sizes = sizes(args.pandas_sizes)
    for n in spark_sizes + pandas_sizes:
        if n % args.chunk or n > args.rows:
            raise SystemExit(f"size {n:,} must be a multiple of --chunk and at most --rows")
    planted = generate(args.data, args.rows, args.test_rows, args.chunk, args.seed)
    workdir = args.data / ("runs" + (f"-{args.tag}" if args.tag else ""))
    workdir.mkdir(exist_ok=True)
    args.local_dir.mkdir(parents=True, exist_ok=True)
    write_config(workdir / "audit.yaml", args.master, args.driver_memory, args.local_dir, args.spark_conf)
    test = args.data / "test.parquet"
    results = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": {"cores": os.cpu_count(), "memory_gib": round(_physical_gib(), 1),
                           "python": platform.python_version()},
               "args": {k: str(v) for k, v in vars(args).items()}, "planted_test": PLANTED_TEST,
               "git": subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True,
                                     text=True).stdout.strip(),
               "spark_native": _native_checks(), "runs": []}
    parquet_bytes = {n: sum(p.stat().st_size for p in sorted((args.data / "train").glob("part-*"))[: n // args.chunk])
                     for n in sorted(set(spark_sizes + pandas_sizes))}
    results["train_parquet_bytes"] = parquet_bytes
    by_key = {}
    for prev in args.previous:  # runs measured by an earlier invocation (same data and policy)
        for row in json.loads(prev.read_text())["runs"]:
            row.setdefault("from_file", prev.name)
            results["runs"].append(row)
            by_key[(row["engine"], row["rows"])] = row
    for n in pandas_sizes:
        row = audit("pandas", n, pandas_input(args.data, workdir, n, args.chunk), test, workdir, args,
                    expected(planted, n))
        results["runs"].append(row)
        by_key[("pandas", n)] = row
        (workdir / f"train-{n}.parquet").unlink(missing_ok=True)
        if row["result"] == "failed":
            break
    for n in spark_sizes:
        row = audit("spark", n, spark_input(args.data, workdir, n, args.chunk), test, workdir, args,
                    expected(planted, n))
        results["runs"].append(row)
        by_key[("spark", n)] = row
        shutil.rmtree(workdir / f"train-{n}.parts", ignore_errors=True)
    results["runs"].sort(key=lambda r: (r["rows"], r["engine"]))
    both = sorted(n for e, n in by_key if e == "spark" and by_key.get(("pandas", n), {}).get("flagged") is not None
                  and by_key[("spark", n)].get("flagged") is not None)
    results["agreement"] = {str(n): agreement(by_key[("pandas", n)], by_key[("spark", n)]) for n in both}
    done = sorted(n for e, n in by_key if e == "pandas" and by_key[(e, n)]["result"] == "completed"
                  and by_key.get(("spark", n), {}).get("result") == "completed")
    if done:  # Spark against pandas at the largest size both finish
        p, q = by_key[("pandas", done[-1])], by_key[("spark", done[-1])]
        results["spark_vs_pandas"] = {"rows": done[-1], "wall_ratio": round(q["wall_s"] / p["wall_s"], 2),
                                      "peak_rss_ratio": round(q["peak_rss_mib"] / p["peak_rss_mib"], 2)}
    results["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    table = markdown(results)
    print(table)
    print(f"\nnative on Spark in this checkout: {', '.join(results['spark_native']) or 'none'}; on a Spark-drawn "
          f"sample: {', '.join(c for c in CHECKS if c not in results['spark_native']) or 'none'}")
    if "spark_vs_pandas" in results:
        r = results["spark_vs_pandas"]
        print(f"\nat {r['rows']:,} rows (largest both finish): Spark takes {r['wall_ratio']}x pandas's wall time "
              f"and {r['peak_rss_ratio']}x its peak memory")
    for n in both:
        diff = {k: v for k, v in results["agreement"][str(n)].items() if not v["same"]}
        print(f"\n{n:,} rows: pandas and Spark flag the same rows in "
              f"{len(results['agreement'][str(n)]) - len(diff)} of {len(results['agreement'][str(n)])} "
              f"check/dataset pairs" + (f"; differ: {', '.join(diff)}" if diff else ""))
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"spark_scale_{datetime.now(timezone.utc):%Y%m%dT%H%M}{('_' + args.tag) if args.tag else ''}.json"
    (RESULTS / name).write_text(json.dumps(results, indent=1))
    print(f"\nwrote {RESULTS / name}", file=sys.stderr)
    if args.clean:
        shutil.rmtree(args.data, ignore_errors=True)
        shutil.rmtree(args.local_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
