"""contamination.ngram: test questions pasted into training documents (case, spacing and punctuation
changed) are found; clean data passes; reference corpora named by the policy are searched too."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from auditor import policy as policy_mod
from auditor.checks.contamination import CorpusIndex, ngram_hashes, overlap, tokenize_many
from auditor.engine import AuditContext, run_check
from auditor.inputs import load_dataset
from tests.conftest import write_policy

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "da", "gu", "zo", "fa", "re", "ti", "ba", "no"]


def _vocabulary(rng, n=4000):
    words = sorted({"".join(rng.choice(SYLLABLES, rng.integers(1, 4))) for _ in range(3 * n)})[:n]
    p = 1.0 / np.arange(1, len(words) + 1)  # Zipf: common words recur, as in real text
    return np.array(words), p / p.sum()


def _disguise(rng, text: str) -> str:
    """Same words, different case, spacing and punctuation."""
    out = []
    for w in text.split(" "):
        r = rng.random()
        out.append(w.upper() if r < 0.3 else w.capitalize() if r < 0.6 else w)
    seps = ["  ", " \n ", "\t", " ", ", ", "; ", " - "]
    return "".join(w + seps[rng.integers(len(seps))] for w in out).strip()


def planted_corpus(seed: int, n_docs=1500, n_questions=400, n_pasted=40):
    """(training documents, test questions, pasted question rows -> training row they were pasted into)."""
    rng = np.random.default_rng(seed)
    words, p = _vocabulary(rng)
    docs = [" ".join(rng.choice(words, rng.integers(80, 250), p=p)) + "." for _ in range(n_docs)]
    questions = [" ".join(rng.choice(words, rng.integers(9, 35), p=p)) + "?" for _ in range(n_questions)]
    pasted = {}
    if n_pasted:
        targets = rng.choice(n_docs, n_pasted, replace=False)  # one question per document
        for q, d in zip(rng.choice(n_questions, n_pasted, replace=False), targets):
            toks = docs[d].split(" ")
            at = int(rng.integers(len(toks)))
            docs[d] = " ".join(toks[:at] + [_disguise(rng, questions[q])] + toks[at:])
            pasted[int(q)] = int(d)
    return docs, questions, pasted


def _ctx(tmp_path, docs, questions, policy_text=None):
    rng = np.random.default_rng(0)
    pd.DataFrame({"document": docs, "label": rng.integers(0, 2, len(docs))}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"question": questions, "label": rng.integers(0, 2, len(questions))}).to_csv(tmp_path / "test.csv", index=False)
    pol = policy_mod.load(write_policy(tmp_path / "p.yaml", policy_text) if policy_text else None)
    return AuditContext(policy=pol, seed=0, train=load_dataset(tmp_path / "train.csv", "train"),
                        test=load_dataset(tmp_path / "test.csv", "test"))


def _rows(result):
    return {r for f in result.findings if f.dataset == "test" for r in (f.rows or ())}


@pytest.mark.parametrize("seed", [0, 1])
def test_pasted_questions_are_found(tmp_path, seed):
    docs, questions, pasted = planted_corpus(seed)
    r = run_check("contamination.ngram", _ctx(tmp_path, docs, questions))
    found = _rows(r)
    hit = len(found & set(pasted))
    recall, precision = hit / len(pasted), hit / max(len(found), 1)
    assert recall >= 0.95 and precision >= 0.9, (recall, precision)
    assert r.status == "fail"
    by_row = {m["test_row"]: m for m in r.metrics["contaminated"]}
    for q in found & set(pasted):
        assert by_row[q]["source"] == "train" and by_row[q]["source_row"] == pasted[q]
        assert by_row[q]["overlap_fraction"] == 1.0
        assert by_row[q]["longest_span_tokens"] == len(tokenize_many([questions[q]]).values)
    assert r.metrics["n"] == 13 and r.metrics["min_span_tokens"] == 13
    assert r.metrics["train_columns"] == ["document"] and r.metrics["test_columns"] == ["question"]


def test_clean_corpus_passes(tmp_path):
    docs, questions, _ = planted_corpus(2, n_pasted=0)
    r = run_check("contamination.ngram", _ctx(tmp_path, docs, questions))
    assert r.status == "pass" and r.findings == ()
    assert r.metrics["contaminated_items"] == 0
    assert r.metrics["test_items_checked"] + r.metrics["test_items_too_short"] == len(questions)


def test_partial_paste_reports_overlap_and_longest_span(tmp_path):
    docs, questions, _ = planted_corpus(3, n_pasted=0)
    q = next(i for i, text in enumerate(questions) if len(text.split()) >= 30)
    toks = questions[q].rstrip("?").split()
    docs[7] += " " + " ".join(toks[:20]).upper() + " ."  # the first 20 of its words only
    r = run_check("contamination.ngram", _ctx(tmp_path, docs, questions))
    (item,) = r.metrics["contaminated"]
    n_grams = len(toks) - 13 + 1
    assert item["test_row"] == q and item["source_row"] == 7
    assert item["longest_span_tokens"] == 20
    assert item["overlap_fraction"] == pytest.approx((20 - 13 + 1) / n_grams, abs=1e-4)
    # requiring most of the item to overlap leaves it out
    policy = "name: t\nextends: nist-ai-rmf\nchecks:\n  contamination.ngram:\n    params: {min_overlap: 0.8}\n"
    assert run_check("contamination.ngram", _ctx(tmp_path, docs, questions, policy)).status == "pass"


def test_reference_corpus_named_in_the_policy(tmp_path):
    docs, questions, _ = planted_corpus(4, n_pasted=0)
    (tmp_path / "web.txt").write_text("Crawled page.\n" + _disguise(np.random.default_rng(4), questions[11]) + "\nEnd.")
    (tmp_path / "forum.jsonl").write_text('{"id": 1, "post": "' + questions[12].upper() + '"}\n')
    policy = ("name: t\nextends: nist-ai-rmf\nchecks:\n  contamination.ngram:\n"
              "    params: {reference_corpora: [web.txt, forum.jsonl]}\n")
    r = run_check("contamination.ngram", _ctx(tmp_path, docs, questions, policy))
    by_row = {m["test_row"]: m for m in r.metrics["contaminated"]}
    assert set(by_row) == {11, 12}
    assert by_row[11]["source"] == "reference:web.txt" and by_row[12]["source"] == "reference:forum.jsonl"


def test_short_items_are_looked_up_whole_and_tiny_ones_skipped():
    corpus = CorpusIndex(["alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu"])
    items = ["Gamma, DELTA epsilon zeta eta theta iota kappa!", "beta gamma", "zeta eta theta iota kappa lambda mu nu"]
    ov = overlap(tokenize_many(items), corpus, n=13, min_tokens=8)
    assert ov.ngrams.tolist() == [1, 0, 1]
    assert ov.found.tolist() == [1, 0, 0]
    assert ov.longest_span.tolist() == [8, 0, 0]


def test_normalisation_folds_case_space_and_punctuation():
    a = tokenize_many(["Hello,   WORLD! it's  café"])
    b = tokenize_many(["hello world it s cafe\u0301"])  # combining accent: NFKC makes it the same word
    assert np.array_equal(a.values, b.values)
    h1, _ = ngram_hashes(tokenize_many(["a b c d e"]), 3)
    h2, _ = ngram_hashes(tokenize_many(["x a b c y"]), 3)
    assert h1[0] == h2[1] and len(set(h1) & set(h2)) == 1


def test_skipped_without_text(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3], "label": [0, 1, 0]})
    frame.to_csv(tmp_path / "train.csv", index=False)
    frame.to_csv(tmp_path / "test.csv", index=False)
    ctx = AuditContext(policy=policy_mod.load(None), seed=0, train=load_dataset(tmp_path / "train.csv", "train"),
                       test=load_dataset(tmp_path / "test.csv", "test"))
    r = run_check("contamination.ngram", ctx)
    assert r.status == "skipped" and "no text columns" in r.reason
