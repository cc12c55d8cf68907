"""Test-set contamination: the auditor's contamination.ngram against two naive approaches.

    python benchmarks/bench_contamination.py [--docs 50000] [--questions 5000]

Training documents (Zipf-distributed pseudo-words, 80-300 words each) with 10 % of the test
questions pasted in: case changed word by word, spacing changed, some punctuation inserted. Methods:
  auditor            contamination.ngram (hashed 13-grams, normalised tokens), as the check runs
  naive substring    lower-case + collapse whitespace, then `question in training_text` per question
  naive n-gram set   the same normalised tokens, a Python set of 13-gram tuples
Each runs in its own process; recall and precision against the planted questions.
"""

from __future__ import annotations

import argparse
import json
import re
import time

from _common import DATA, cores, measure

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "da", "gu", "zo", "fa", "re", "ti", "ba", "no"]


def make(n_docs: int, n_questions: int, seed: int = 0) -> dict:
    import numpy as np
    import pandas as pd

    out = DATA / f"contamination_{n_docs}_{n_questions}"
    meta = out / "planted.json"
    if meta.exists():
        return json.loads(meta.read_text())
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = np.array(sorted({"".join(rng.choice(SYLLABLES, rng.integers(1, 4))) for _ in range(20000)})[:5000])
    p = 1.0 / np.arange(1, len(words) + 1)
    p /= p.sum()
    docs = [" ".join(rng.choice(words, rng.integers(80, 300), p=p)) + "." for _ in range(n_docs)]
    questions = [" ".join(rng.choice(words, rng.integers(12, 40), p=p)) + "?" for _ in range(n_questions)]
    pasted = rng.choice(n_questions, n_questions // 10, replace=False)
    targets = rng.choice(n_docs, len(pasted), replace=False)
    seps = ["  ", " \n ", "\t", " ", ", ", "; ", " - "]
    for q, d in zip(pasted, targets):
        toks = [w.upper() if r < 0.3 else w.capitalize() if r < 0.6 else w
                for w, r in zip(questions[q].split(" "), rng.random(len(questions[q].split(" "))))]
        text = "".join(w + seps[rng.integers(len(seps))] for w in toks).strip()
        doc = docs[d].split(" ")
        at = int(rng.integers(len(doc)))
        docs[d] = " ".join(doc[:at] + [text] + doc[at:])
    pd.DataFrame({"document": docs, "label": rng.integers(0, 2, n_docs)}).to_parquet(out / "train.parquet")
    pd.DataFrame({"question": questions, "label": rng.integers(0, 2, n_questions)}).to_parquet(out / "test.parquet")
    planted = {"dir": str(out), "planted": sorted(int(q) for q in pasted),
               "tokens": int(sum(len(d.split()) for d in docs))}
    meta.write_text(json.dumps(planted))
    return planted


def run_auditor(directory: str) -> dict:
    import pyarrow.compute  # noqa: F401  (imports outside the timing, like `re` for the naive ones)
    from pandas.util import hash_array  # noqa: F401

    from auditor import policy as policy_mod
    from auditor.engine import AuditContext, run_check
    from auditor.inputs import load_dataset

    ctx = AuditContext(policy=policy_mod.load(None), seed=0, train=load_dataset(f"{directory}/train.parquet", "train"),
                       test=load_dataset(f"{directory}/test.parquet", "test"))
    t = time.perf_counter()
    r = run_check("contamination.ngram", ctx)
    return {"seconds": round(time.perf_counter() - t, 2),
            "flagged": sorted({x for f in r.findings for x in (f.rows or ())})}


def _read(directory: str):
    import pandas as pd

    return (pd.read_parquet(f"{directory}/train.parquet")["document"].tolist(),
            pd.read_parquet(f"{directory}/test.parquet")["question"].tolist())


def run_substring(directory: str) -> dict:
    docs, questions = _read(directory)
    t = time.perf_counter()
    norm = lambda s: " ".join(s.lower().split())  # noqa: E731
    corpus = "\n".join(norm(d) for d in docs)
    flagged = [i for i, q in enumerate(questions) if norm(q).rstrip("?") in corpus]
    return {"seconds": round(time.perf_counter() - t, 2), "flagged": flagged}


def run_ngram_set(directory: str, n: int = 13) -> dict:
    docs, questions = _read(directory)
    t = time.perf_counter()
    tok = lambda s: re.findall(r"\w+", s.lower())  # noqa: E731
    grams = set()
    for d in docs:
        w = tok(d)
        grams.update(tuple(w[i:i + n]) for i in range(len(w) - n + 1))
    flagged = []
    for i, q in enumerate(questions):
        w = tok(q)
        if any(tuple(w[j:j + n]) in grams for j in range(len(w) - n + 1)):
            flagged.append(i)
    return {"seconds": round(time.perf_counter() - t, 2), "flagged": flagged}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=50000)
    ap.add_argument("--questions", type=int, default=5000)
    args = ap.parse_args()
    d = make(args.docs, args.questions)
    print(f"{args.docs:,} training documents ({d['tokens']:,} words), {args.questions:,} test questions "
          f"(12-39 words), {len(d['planted'])} pasted with case/spacing/punctuation changed; {cores()} cores")
    print(f"{'method':22s} {'secs':>7s} {'wall s':>7s} {'peak MB':>8s} {'recall':>7s} {'precision':>9s}")
    planted = set(d["planted"])
    for name, fn in (("auditor", "run_auditor"), ("naive substring", "run_substring"),
                     ("naive n-gram set", "run_ngram_set")):
        r = measure("bench_contamination", fn, d["dir"])
        if "error" in r:
            print(f"{name:22s} failed: {r['error']}")
            continue
        f = set(r["flagged"])
        hit = len(f & planted)
        print(f"{name:22s} {r['seconds']:7.2f} {r['wall_s']:7.2f} {r['peak_rss_mb']:8d} {hit / len(planted):7.3f} "
              f"{hit / max(len(f), 1):9.3f}")


if __name__ == "__main__":
    main()
