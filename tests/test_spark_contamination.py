"""contamination.ngram on Spark gives what the pandas engine gives: planted pastes (case, spacing,
punctuation, accents composed or not, full-width letters changed; Latin, Cyrillic, Greek and CJK words)
are found at the same rows with the same overlap, span and source; texts sharing only short phrases and
items too short to check are not flagged; reference corpora are searched and numbered alike. Files are
cut into many small splits so row numbers cross split boundaries."""

from __future__ import annotations

import json
import unicodedata

import numpy as np
import pandas as pd
import pytest

from auditor import policy as policy_mod
from tests.conftest import both_engines, flagged, write_policy

pytestmark = pytest.mark.usefixtures("small_splits")

LATIN = ["ka", "lo", "mi", "ne", "ru", "ta", "po", "ve", "da", "gu", "zo", "fa"]
WORDS = (["café", "naïve", "élan", "Ærø", "über", "Straße", "привет", "мир", "данные", "東京", "データ",
          "学習", "ΣΟΦΟΣ", "λόγος", "ＡＢＣ"]
         + sorted({"".join(p) for p in np.random.default_rng(7).choice(LATIN, (400, 3))}))


def _text(rng, k: int) -> str:
    return " ".join(rng.choice(WORDS, k))


def _same_tokens(a: str, b: str) -> bool:
    from auditor.checks.contamination import tokenize_many

    return np.array_equal(tokenize_many([a]).values, tokenize_many([b]).values)


def _full_width(word: str) -> str:
    """ASCII letters as their full-width forms (NFKC folds them back)."""
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalpha() else c for c in word)


def _disguise(rng, text: str, newlines: bool = False) -> str:
    """The same tokens for the pandas rule: case, spacing and punctuation changed, accents decomposed,
    letters full-width (a case change that changes the token, as upper-casing 'ß' or a final sigma does, is left out)."""
    out = []
    for w in text.split(" "):
        r = rng.random()
        v = (w.upper() if r < 0.3 else w.capitalize() if r < 0.45 else unicodedata.normalize("NFD", w) if r < 0.6
             else _full_width(w) if r < 0.75 else w)
        out.append(v if _same_tokens(v, w) else w)
    seps = ["  ", "\t", " ", ", ", "; ", " - ", "...", " «", "» "] + ([" \n ", "\r\n"] if newlines else [])
    return "".join(w + seps[rng.integers(len(seps))] for w in out).strip()


def _planted(seed: int, n_train=160, n_test=90, newlines=False):
    """(train docs, test questions, {test row: (train row, expected longest span)}, rows that must not be flagged).
    ``newlines``: pastes may hold line breaks (JSON lines; Spark reads CSV line by line unless told otherwise)."""
    rng = np.random.default_rng(seed)
    docs = [_text(rng, int(rng.integers(30, 90))) + "." for _ in range(n_train)]
    questions = [_text(rng, int(rng.integers(14, 30))) + "?" for _ in range(n_test)]
    expected, clean = {}, []
    rows, targets = iter(rng.permutation(n_test).tolist()), iter(rng.permutation(n_train).tolist())

    def paste(q: int, text: str, span: int) -> None:
        d = next(targets)
        docs[d] += " " + text + " end."
        expected[q] = (d, span)

    for q in [next(rows) for _ in range(10)]:  # whole questions, disguised
        paste(q, _disguise(rng, questions[q].rstrip("?"), newlines), len(questions[q].split()))
    for k in (9, 10, 11):  # short questions, looked up whole
        q = next(rows)
        questions[q] = _text(rng, k) + "!"
        paste(q, _disguise(rng, questions[q], newlines), k)
    q = next(rows)  # the first 16 words of a 28-word question: a partial overlap
    questions[q] = _text(rng, 28)
    paste(q, " ".join(questions[q].split()[:16]).upper(), 16)
    q = next(rows)  # dotted capital I folds to i in Arrow (Java would give i + combining dot)
    rest = _text(rng, 15)
    questions[q] = "İSTANBUL " + rest
    paste(q, "istanbul " + rest, 16)
    for _ in range(6):  # shares 12 consecutive words only: one short of an n-gram
        q, t = next(rows), docs[int(rng.integers(n_train))].rstrip(".").split()
        at = int(rng.integers(len(t) - 12))
        questions[q] = _text(rng, 6) + " " + " ".join(t[at:at + 12]) + " " + _text(rng, 6)
        clean.append(q)
    q = next(rows)  # upper-case final sigma: 'λόγοσ' in Arrow, not 'λόγος' (Java would match it)
    words = _text(rng, 14).split()
    docs[next(targets)] += " " + " ".join(words[:7] + ["λόγος"] + words[7:]) + "."
    questions[q] = " ".join(words[:7] + ["ΛΌΓΟΣ"] + words[7:])
    clean.append(q)
    for _ in range(3):  # too short to check, though pasted
        q = next(rows)
        questions[q] = _text(rng, 5)
        docs[next(targets)] += " " + questions[q] + "."
        clean.append(q)
    q = next(rows)
    questions[q] = None
    clean.append(q)
    return docs, questions, expected, clean


def _policy(tmp_path, params: str | None = None):
    if params is None:
        return policy_mod.load(None)
    text = f"name: t\nextends: nist-ai-rmf\nchecks:\n  contamination.ngram:\n    params: {params}\n"
    return policy_mod.load(write_policy(tmp_path / "p.yaml", text))


def _write(tmp_path, fmt: str, train: pd.DataFrame, test: pd.DataFrame):
    paths = []
    for name, frame in (("train", train), ("test", test)):
        path = tmp_path / f"{name}.{fmt}"
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            path.write_text("".join(json.dumps({k: (None if pd.isna(v) else v) for k, v in r.items()},
                                               ensure_ascii=False) + "\n" for r in frame.to_dict("records")),
                            encoding="utf-8")
        paths.append(path)
    return paths


def assert_same(pandas_result, spark_result):
    """Same status, rows, finding messages and metrics (quantiles within float rounding)."""
    assert spark_result.status == pandas_result.status, (spark_result.reason, spark_result.traceback)
    assert flagged(spark_result) == flagged(pandas_result)
    assert [f.message for f in spark_result.findings] == [f.message for f in pandas_result.findings]
    assert [f.details for f in spark_result.findings] == [f.details for f in pandas_result.findings]
    pm, sm = dict(pandas_result.metrics), dict(spark_result.metrics)
    pq, sq = pm.pop("overlap_fraction_quantiles"), sm.pop("overlap_fraction_quantiles")
    assert sm == pm
    assert sq == pytest.approx(pq, abs=1e-12)


@pytest.mark.parametrize("fmt,seed", [("csv", 0), ("jsonl", 1)])
def test_planted_pastes_same_rows_on_both_engines(tmp_path, fmt, seed):
    docs, questions, expected, clean = _planted(seed, newlines=fmt == "jsonl")
    rng = np.random.default_rng(seed + 100)  # not the stream _planted drew from
    train = pd.DataFrame({"id": range(len(docs)), "document": docs, "label": rng.integers(0, 2, len(docs))})
    test = pd.DataFrame({"question": questions, "label": rng.integers(0, 2, len(questions))})
    train_path, test_path = _write(tmp_path, fmt, train, test)
    p, s = both_engines("contamination.ngram", _policy(tmp_path), train=train_path, test=test_path)
    assert_same(p, s)
    assert s.status == "fail"
    assert flagged(s) == {"test": sorted(expected)}
    assert not set(clean) & set(flagged(s)["test"])
    by_row = {m["test_row"]: m for m in s.metrics["contaminated"]}
    for q, (doc, span) in expected.items():
        assert (by_row[q]["source"], by_row[q]["source_row"], by_row[q]["longest_span_tokens"]) == ("train", doc, span)
    assert s.metrics["test_items_too_short"] == 4  # three 5-word questions and a missing one


def test_clean_text_and_thresholds_agree(tmp_path):
    """No paste: both pass. With pastes and other params (n = 8, span >= 20, overlap >= 0.3): same rows."""
    docs, questions, expected, _ = _planted(2)
    rng = np.random.default_rng(102)
    clean_docs = [_text(rng, 60) for _ in docs]
    frame = lambda d: pd.DataFrame({"document": d, "label": rng.integers(0, 2, len(d))})  # noqa: E731
    test = pd.DataFrame({"question": questions, "label": rng.integers(0, 2, len(questions))})
    train_path, test_path = _write(tmp_path, "csv", frame(clean_docs), test)
    p, s = both_engines("contamination.ngram", _policy(tmp_path), train=train_path, test=test_path)
    assert_same(p, s)
    assert s.status == "pass" and s.findings == ()

    train_path, test_path = _write(tmp_path, "csv", frame(docs), test)
    params = "{n: 8, min_span: 20, min_overlap: 0.3, min_tokens: 6, max_fraction: 0.2}"
    p, s = both_engines("contamination.ngram", _policy(tmp_path, params), train=train_path, test=test_path)
    assert_same(p, s)
    assert s.status == "warn"
    # an item shorter than min_span counts when all of it is found; the partial paste (16 of 28 words:
    # overlap 9/21 >= 0.3) does not reach the span of 20
    whole = {q for q, (_, span) in expected.items() if span == len(questions[q].split())}
    assert len(whole) == len(expected) - 1
    assert flagged(s) == {"test": sorted(whole)}


def test_two_text_columns_and_reference_corpora(tmp_path):
    """Rows pool their text columns (on a tie in span, the source is the first column's); reference
    corpora (.txt, .jsonl with nulls and keys in file order, .csv with empty fields, .parquet with nulls)
    name the same rows."""
    docs, questions, expected, _ = _planted(3)
    rng = np.random.default_rng(103)
    contexts = [_text(rng, 25) for _ in questions]
    for k, q in enumerate(list(expected)[:3]):  # the context, as long as the question, pasted into doc k
        contexts[q] = _text(rng, expected[q][1])
        docs[k] += " " + contexts[q] + "."
    row_web, row_forum, row_sheet, row_pq = [r for r in range(len(questions)) if r not in expected][:4]
    for r in (row_web, row_forum, row_sheet, row_pq):
        questions[r], contexts[r] = _text(rng, 20), _text(rng, 20)
    web = "Crawled page.\n" + _disguise(rng, questions[row_web]) + "\nEnd."
    (tmp_path / "web.txt").write_text(web, encoding="utf-8")
    forum = [{"title": "x", "post": None}, {"post": _text(rng, 30), "id": 2},
             {"id": 3, "post": _disguise(rng, contexts[row_forum]), "title": None}, {"post": _text(rng, 30)}]
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in forum)
    (tmp_path / "forum.jsonl").write_text(lines, encoding="utf-8")
    pd.DataFrame({"a": ["", _text(rng, 10), ""], "b": [_text(rng, 30), "", questions[row_sheet]],
                  "n": [1, 2, 3]}).to_csv(tmp_path / "sheet.csv", index=False)
    pd.DataFrame({"t": [None, _text(rng, 20), None, _text(rng, 20)],
                  "u": [_text(rng, 20), None, questions[row_pq].upper(), None]}).to_parquet(tmp_path / "dump.parquet")
    train = pd.DataFrame({"document": docs, "label": rng.integers(0, 2, len(docs))})
    test = pd.DataFrame({"question": questions, "context": contexts, "label": rng.integers(0, 2, len(questions))})
    train_path, test_path = _write(tmp_path, "csv", train, test)
    policy = _policy(tmp_path, "{reference_corpora: [web.txt, forum.jsonl, sheet.csv, dump.parquet]}")
    p, s = both_engines("contamination.ngram", policy, train=train_path, test=test_path)
    assert_same(p, s)
    assert s.metrics["test_columns"] == ["question", "context"]
    assert flagged(s) == {"test": sorted(set(expected) | {row_web, row_forum, row_sheet, row_pq})}
    by_row = {m["test_row"]: m for m in s.metrics["contaminated"]}
    for q, (doc, span) in expected.items():
        assert (by_row[q]["source_row"], by_row[q]["longest_span_tokens"]) == (doc, span)
    # forum.jsonl's documents: title "x", then post values (key order of first appearance, nulls skipped)
    assert (by_row[row_web]["source"], by_row[row_web]["source_row"]) == ("reference:web.txt", 0)
    assert (by_row[row_forum]["source"], by_row[row_forum]["source_row"]) == ("reference:forum.jsonl", 2)
    assert (by_row[row_sheet]["source"], by_row[row_sheet]["source_row"]) == ("reference:sheet.csv", 5)
    assert (by_row[row_pq]["source"], by_row[row_pq]["source_row"]) == ("reference:dump.parquet", 3)
