"""Near-duplicate search between a test set and a training set.

Tables and arrays are embedded in a numeric *space*: numeric columns robustly scaled (median, IQR),
categorical columns (and which numbers are missing) turned into a *block* key that must match
exactly. Exact duplicates are removed from the training side first, so repeated rows never shrink
the distance scale.

The threshold comes from the training set itself. The nearest-neighbour distance from a training row
to the other training rows has, where the density is locally smooth, a Weibull distribution
``F(r) = 1 - exp(-(r/s)^m)`` whose shape ``m`` is the local (intrinsic) dimension. Its quartiles give
``m`` and ``s``; the threshold is the distance that an ordinary row from the same distribution would
undercut with probability ``false_match_rate`` (capped at ``max_ratio`` of the lower quartile). The
quartiles are robust: up to a quarter of the distinct training rows may be near-copies of each other
without moving them, and exact copies do not count at all. Denser-than-typical regions lower the
estimated ``m`` and so the threshold: the estimate errs towards not flagging.

Search is exact (blocked brute force, distances recomputed exactly for the winners) when the number
of same-block test x train pairs is within budget, and otherwise a fixed-radius E2LSH grid: random
Gaussian projections cut into cells 4 x threshold wide, with as many cells per table and tables as it
takes to reach ``target_recall`` for a pair exactly at the threshold (closer pairs collide more often).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from auditor.checks.leakage_hashing import Canonical, canonical, combine, mix64

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: -ln(1 - p) at the quartiles: the Weibull quantile transform
_LOG_Q25 = -math.log(0.75)
_LOG_Q75 = -math.log(0.25)
#: widest flattened array searched directly; wider arrays are reduced with PCA first
MAX_DIRECT_DIMS = 256
PCA_DIMS = 64


@dataclass
class Space:
    """Training and test rows as scaled numeric coordinates plus an exact-match block key."""

    train: "np.ndarray"  # float32 (n_train, d)
    test: "np.ndarray"  # float32 (n_test, d)
    train_block: "np.ndarray"  # uint64
    test_block: "np.ndarray"  # uint64
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    notes: dict = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return int(self.train.shape[1])


# ----------------------------------------------------------------------------- spaces


def _numeric_view(c: Canonical) -> "np.ndarray | None":
    """Float values when every present value is a number or a datetime; else None."""
    import numpy as np

    present = c.kind != 0
    if np.any((c.kind == 2) & present):
        return None
    out = np.full(len(c.kind), np.nan)
    out[c.kind == 1] = c.num[c.kind == 1]
    out[c.kind == 3] = c.ints[c.kind == 3].astype(np.float64)
    return out


def table_space(train: "pd.DataFrame", test: "pd.DataFrame", columns: Sequence[str]) -> Space:
    """Numeric columns scaled by the training median and IQR (std if the IQR is 0); other columns,
    numeric columns constant in training and the pattern of missing numbers go into the block key."""
    import numpy as np

    n_tr, n_te = len(train), len(test)
    tr_cols, te_cols = [], []
    tr_block = np.full(n_tr, 0x2545F4914F6CDD1D, dtype=np.uint64)
    te_block = np.full(n_te, 0x2545F4914F6CDD1D, dtype=np.uint64)
    numeric, categorical = [], []
    for col in columns:
        ca, cb = canonical(train[col]), canonical(test[col])
        va, vb = _numeric_view(ca), _numeric_view(cb)
        scale = 0.0
        if va is not None and vb is not None and np.isfinite(va).any():
            finite = va[np.isfinite(va)]
            med = float(np.median(finite))
            q1, q3 = np.percentile(finite, [25, 75])
            scale = float(q3 - q1) / 1.349
            if not scale > 0:
                scale = float(finite.std())
        if scale > 0:
            miss_a, miss_b = ~np.isfinite(va), ~np.isfinite(vb)
            tr_cols.append(np.where(miss_a, 0.0, (va - med) / scale))
            te_cols.append(np.where(miss_b, 0.0, (vb - med) / scale))
            if miss_a.any() or miss_b.any():
                tr_block = combine(tr_block, miss_a.astype(np.uint64))
                te_block = combine(te_block, miss_b.astype(np.uint64))
            numeric.append(col)
        else:
            tr_block = combine(tr_block, ca.hashes())
            te_block = combine(te_block, cb.hashes())
            categorical.append(col)
    d = len(tr_cols)
    X = np.column_stack(tr_cols).astype(np.float32) if d else np.zeros((n_tr, 0), np.float32)
    Y = np.column_stack(te_cols).astype(np.float32) if d else np.zeros((n_te, 0), np.float32)
    return Space(X, Y, tr_block, te_block, numeric, categorical)


def array_space(X_train: "np.ndarray", X_test: "np.ndarray", seed: int) -> Space:
    """Arrays flattened and scaled by one global standard deviation (pixels keep their geometry);
    wider than MAX_DIRECT_DIMS: projected on the first PCA_DIMS principal components of the training set."""
    import numpy as np

    a = X_train.reshape(len(X_train), -1).astype(np.float64)
    b = X_test.reshape(len(X_test), -1).astype(np.float64)
    nan_a, nan_b = ~np.isfinite(a), ~np.isfinite(b)
    tr_block = np.zeros(len(a), dtype=np.uint64)
    te_block = np.zeros(len(b), dtype=np.uint64)
    if nan_a.any() or nan_b.any():
        from auditor.checks.leakage_hashing import array_row_hashes

        tr_block, te_block = array_row_hashes(nan_a.astype(np.float64)), array_row_hashes(nan_b.astype(np.float64))
        a, b = np.where(nan_a, 0.0, a), np.where(nan_b, 0.0, b)
    center = a.mean(axis=0)
    scale = float((a - center).std()) or 1.0
    a, b = (a - center) / scale, (b - center) / scale
    notes = {"flattened_dims": int(a.shape[1]), "scale": "one global standard deviation"}
    if a.shape[1] > MAX_DIRECT_DIMS:
        from sklearn.decomposition import PCA
        from threadpoolctl import threadpool_limits

        rng = np.random.default_rng(seed)
        fit_rows = a if len(a) <= 20000 else a[rng.choice(len(a), 20000, replace=False)]
        k = min(PCA_DIMS, fit_rows.shape[0], fit_rows.shape[1])
        with threadpool_limits(limits=1):
            pca = PCA(n_components=k, svd_solver="randomized", random_state=seed).fit(fit_rows)
        a, b = pca.transform(a), pca.transform(b)
        notes["pca_components"] = int(k)
        notes["pca_explained_variance"] = round(float(pca.explained_variance_ratio_.sum()), 4)
    return Space(a.astype(np.float32), b.astype(np.float32), tr_block, te_block, notes=notes)


def space_row_keys(X: "np.ndarray", block: "np.ndarray") -> "np.ndarray":
    """A hash per row of (block, coordinates): equal keys are the same point of the space."""
    import numpy as np

    h = block.copy()
    bits = np.ascontiguousarray(X, dtype=np.float32).view(np.uint32).astype(np.uint64)
    for j in range(X.shape[1]):
        h = combine(h, bits[:, j])
    return h


# ----------------------------------------------------------------------------- brute force


def _blocks(block: "np.ndarray") -> "tuple[np.ndarray, np.ndarray, np.ndarray]":
    """(sort order, unique block keys, start offsets into the order; one more offset at the end)."""
    import numpy as np

    order = np.argsort(block, kind="stable")
    keys, starts = np.unique(block[order], return_index=True)
    return order, keys, np.append(starts, len(order))


def nearest(queries: "np.ndarray", q_block: "np.ndarray", index: "np.ndarray", i_block: "np.ndarray",
            self_ids: "np.ndarray | None" = None, chunk_elems: int = 1 << 22) -> "tuple[np.ndarray, np.ndarray, int]":
    """Exact nearest index row (same block) of every query: (distance, index row or -1, pairs compared).

    ``self_ids[i]`` is the index row that query i is (excluded from its own search). Distances come
    from |q|^2 + |x|^2 - 2 q.x in float32 for the search, then recomputed exactly in float64 for the winner.
    """
    import numpy as np

    nq = len(queries)
    best = np.full(nq, -1, dtype=np.int64)
    order, keys, starts = _blocks(i_block)
    pos = np.searchsorted(keys, q_block)
    pos_ok = pos < len(keys)
    pos_ok[pos_ok] = keys[pos[pos_ok]] == q_block[pos_ok]
    q_order = np.argsort(np.where(pos_ok, pos, -1), kind="stable")
    q_order = q_order[pos_ok[q_order]]
    q_pos = pos[q_order]
    bounds = np.flatnonzero(np.diff(q_pos)) + 1
    pairs = 0
    x_sq_all = np.einsum("ij,ij->i", index, index, dtype=np.float32) if index.shape[1] else np.zeros(len(index), np.float32)
    for group in np.split(np.arange(len(q_order)), bounds) if len(q_order) else []:
        qi = q_order[group]
        b = q_pos[group[0]]
        members = order[starts[b]:starts[b + 1]]
        Xb = index[members]
        xsq = x_sq_all[members]
        rows_per = max(1, chunk_elems // max(len(members), 1))
        for s in range(0, len(qi), rows_per):
            qs = qi[s:s + rows_per]
            Q = queries[qs]
            d2 = xsq[None, :] - 2.0 * (Q @ Xb.T)
            if self_ids is not None:
                own = self_ids[qs]
                hit = np.flatnonzero(np.isin(members, own))
                if len(hit):
                    loc = {int(m): j for j, m in zip(hit, members[hit])}
                    for r, o in enumerate(own):
                        j = loc.get(int(o))
                        if j is not None:
                            d2[r, j] = np.inf
            arg = np.argmin(d2, axis=1)
            cand = members[arg]
            valid = np.isfinite(d2[np.arange(len(qs)), arg])
            best[qs[valid]] = cand[valid]
            pairs += len(qs) * len(members)
    found = best >= 0
    dist = np.full(nq, np.inf)
    if found.any():
        diff = queries[found].astype(np.float64) - index[best[found]].astype(np.float64)
        dist[found] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return dist, best, pairs


def block_pairs(q_block: "np.ndarray", i_block: "np.ndarray") -> int:
    """How many same-block (query, index) pairs a brute-force search compares."""
    import numpy as np

    keys, counts = np.unique(i_block, return_counts=True)
    qkeys, qcounts = np.unique(q_block, return_counts=True)
    pos = np.searchsorted(keys, qkeys)
    ok = pos < len(keys)
    ok[ok] = keys[pos[ok]] == qkeys[ok]
    return int((qcounts[ok].astype(np.int64) * counts[pos[ok]]).sum())


# ----------------------------------------------------------------------------- threshold


@dataclass
class Reference:
    """The training set's own nearest-neighbour distances and the threshold derived from them."""

    sample_rows: int
    distances_used: int
    r25: float
    r75: float
    dimension: float
    threshold: float
    index_rows: int
    rescaled_from: int | None

    def metrics(self) -> dict:
        return {
            "reference_sample_rows": self.sample_rows,
            "reference_distances_used": self.distances_used,
            "reference_nn_distance_q25": round(self.r25, 6),
            "reference_nn_distance_q75": round(self.r75, 6),
            "estimated_local_dimension": round(self.dimension, 3) if math.isfinite(self.dimension) else None,
            "reference_index_rows": self.index_rows,
            **({"reference_rescaled_from_rows": self.rescaled_from} if self.rescaled_from else {}),
        }


def weibull_threshold(r25: float, r75: float, false_match_rate: float, max_ratio: float) -> "tuple[float, float]":
    """(threshold, dimension m) from the quartiles of nearest-neighbour distances."""
    if not (r25 > 0 and r75 > 0):
        return 0.0, float("nan")
    if r75 <= r25 * (1 + 1e-9):
        return max_ratio * r25, float("inf")
    m = math.log(_LOG_Q75 / _LOG_Q25) / math.log(r75 / r25)
    r_alpha = r25 * (false_match_rate / _LOG_Q25) ** (1.0 / m)
    return min(r_alpha, max_ratio * r25), m


def reference(space_train: "np.ndarray", block: "np.ndarray", rng: "np.random.Generator", false_match_rate: float,
              max_ratio: float, sample_rows: int = 2000, max_index_rows: int = 200_000) -> Reference | None:
    """Nearest-other-row distances of a sample of (distinct) training rows; None when too few exist.

    With more than ``max_index_rows`` distinct rows, the sample is searched within a random subset of
    that size and the quartiles rescaled to the full size with the fitted dimension: under the
    Weibull model the distances scale as (subset / full) ** (1 / m).
    """
    import numpy as np

    n = len(space_train)
    index_ids = np.arange(n)
    rescaled_from = None
    if n > max_index_rows:
        index_ids = np.sort(rng.choice(n, max_index_rows, replace=False))
        rescaled_from = max_index_rows
    k = min(sample_rows, len(index_ids))
    local = np.sort(rng.choice(len(index_ids), k, replace=False))
    sample_ids = index_ids[local]
    X_index, b_index = space_train[index_ids], block[index_ids]
    dist, _, _ = nearest(space_train[sample_ids], block[sample_ids], X_index, b_index, self_ids=local)
    d = dist[np.isfinite(dist) & (dist > 0)]
    if len(d) < 20:
        return None
    r25, r75 = (float(v) for v in np.percentile(d, [25, 75]))
    _, m = weibull_threshold(r25, r75, false_match_rate, max_ratio)
    if rescaled_from and math.isfinite(m) and m > 0:
        factor = (max_index_rows / n) ** (1.0 / m)
        r25, r75 = r25 * factor, r75 * factor
    threshold, m = weibull_threshold(r25, r75, false_match_rate, max_ratio)
    return Reference(k, int(len(d)), r25, r75, m, threshold, int(len(index_ids)), n if rescaled_from else None)


# ----------------------------------------------------------------------------- scalable search


@dataclass
class GridPlan:
    cells_per_table: int
    tables: int
    width: float
    pair_recall: float  # collision probability of a pair exactly at the threshold


def _cell_keys(X: "np.ndarray", block: "np.ndarray", G: "np.ndarray", offset: "np.ndarray", width: float) -> "np.ndarray":
    import numpy as np

    cells = np.floor((X @ G + offset) / width).astype(np.int64)
    h = block.copy()
    for j in range(cells.shape[1]):
        h = combine(h, cells[:, j].view(np.uint64).copy())
    return h


def plan_grid(X: "np.ndarray", block: "np.ndarray", radius: float, rng: "np.random.Generator",
              target_recall: float = 0.99, max_tables: int = 64, max_bucket: float = 4.0) -> GridPlan:
    """Cells per table: the fewest that keep the average same-cell training rows of a training row
    under ``max_bucket``; tables: enough to reach ``target_recall`` at the threshold distance."""
    import numpy as np

    width = 4.0 * radius
    q = 1.0 - math.sqrt(2.0 / math.pi) * radius / width  # P(same cell along one projection) at distance radius
    sample = X if len(X) <= 20000 else X[rng.choice(len(X), 20000, replace=False)]
    sb = block if len(X) <= 20000 else None
    if sb is None:
        idx = rng.choice(len(X), 20000, replace=False)
        sample, sb = X[idx], block[idx]
    scale_up = len(X) / len(sample)
    p = 1
    while p < 24:
        G = rng.standard_normal((X.shape[1], p)).astype(np.float32)
        off = rng.uniform(0, width, p).astype(np.float32)
        keys = _cell_keys(sample, sb, G, off, width)
        _, counts = np.unique(keys, return_counts=True)
        # expected same-cell rows per row, in the full training set
        crowd = float((counts.astype(np.float64) ** 2).sum() / counts.sum()) * scale_up
        if crowd <= max_bucket:
            break
        p += 1
    collide = q ** p
    tables = 1 if collide >= 1 else int(math.ceil(math.log(1 - target_recall) / math.log(1 - collide)))
    tables = max(1, min(tables, max_tables))
    return GridPlan(p, tables, width, 1 - (1 - collide) ** tables)


def grid_search(train: "np.ndarray", t_block: "np.ndarray", test: "np.ndarray", q_block: "np.ndarray",
                radius: float, rng: "np.random.Generator", target_recall: float = 0.99,
                max_pairs_per_pass: int = 1 << 23) -> "tuple[np.ndarray, np.ndarray, GridPlan, int]":
    """Fixed-radius near neighbours through an E2LSH grid: (distance, train row or -1, plan, pairs compared).

    Only test rows with a training row within ``radius`` that shares a cell get one; their distance
    is exact (float64).
    """
    import numpy as np

    plan = plan_grid(train, t_block, radius, rng, target_recall)
    n_te = len(test)
    best_d = np.full(n_te, np.inf)
    best_i = np.full(n_te, -1, dtype=np.int64)
    pairs_total = 0
    for _ in range(plan.tables):
        G = rng.standard_normal((train.shape[1], plan.cells_per_table)).astype(np.float32)
        off = rng.uniform(0, plan.width, plan.cells_per_table).astype(np.float32)
        tk = _cell_keys(train, t_block, G, off, plan.width)
        qk = _cell_keys(test, q_block, G, off, plan.width)
        order = np.argsort(tk, kind="stable")
        sk = tk[order]
        lo = np.searchsorted(sk, qk, "left")
        hi = np.searchsorted(sk, qk, "right")
        cnt = hi - lo
        has = np.flatnonzero(cnt > 0)
        if not len(has):
            continue
        # expand (test, train) candidate pairs in passes of bounded size
        cum = np.cumsum(cnt[has])
        start = 0
        while start < len(has):
            stop = int(np.searchsorted(cum, (cum[start - 1] if start else 0) + max_pairs_per_pass, "right"))
            stop = max(stop, start + 1)
            rows = has[start:stop]
            c = cnt[rows]
            qi = np.repeat(rows, c)
            first = np.repeat(lo[rows] - np.cumsum(np.r_[0, c[:-1]]), c)
            ti = order[first + np.arange(len(qi))]
            diff = test[qi].astype(np.float64) - train[ti].astype(np.float64)
            d = np.sqrt(np.einsum("ij,ij->i", diff, diff))
            pairs_total += len(qi)
            # keep the closest per test row
            better = d < best_d[qi]
            if better.any():
                qb, db, tb = qi[better], d[better], ti[better]
                srt = np.lexsort((db, qb))
                qb, db, tb = qb[srt], db[srt], tb[srt]
                firsts = np.r_[True, qb[1:] != qb[:-1]]
                upd = db[firsts] < best_d[qb[firsts]]
                best_d[qb[firsts][upd]] = db[firsts][upd]
                best_i[qb[firsts][upd]] = tb[firsts][upd]
            start = stop
    return best_d, best_i, plan, pairs_total


# ----------------------------------------------------------------------------- text (MinHash / LSH)


@dataclass
class ShingleSets:
    """Per-document sorted distinct shingle hashes in CSR form."""

    values: "np.ndarray"  # uint64
    offsets: "np.ndarray"  # int64, len = docs + 1

    def doc(self, i: int) -> "np.ndarray":
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    @property
    def sizes(self) -> "np.ndarray":
        import numpy as np

        return np.diff(self.offsets)


def shingle_sets(texts: Sequence[str], k: int) -> ShingleSets:
    """Distinct word k-shingles of each text (normalised tokens; a text shorter than k is one shingle)."""
    import numpy as np

    from auditor.checks.contamination import ngram_hashes, tokenize_many

    tokens = tokenize_many(texts)
    h, doc = ngram_hashes(tokens, k, short_as_whole=True)
    order = np.lexsort((h, doc))
    h, doc = h[order], doc[order]
    keep = np.r_[True, (h[1:] != h[:-1]) | (doc[1:] != doc[:-1])] if len(h) else np.zeros(0, bool)
    h, doc = h[keep], doc[keep]
    counts = np.bincount(doc, minlength=len(texts))
    return ShingleSets(h, np.r_[0, np.cumsum(counts)].astype(np.int64))


def minhash_signatures(sets: ShingleSets, num_perm: int, seed: int) -> "np.ndarray":
    """(docs, num_perm) uint64 MinHash signatures; empty documents get all-ones rows (never collide by design)."""
    import numpy as np

    n = len(sets.offsets) - 1
    sig = np.full((n, num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
    nonempty = np.flatnonzero(sets.sizes > 0)
    if not len(nonempty):
        return sig
    starts = sets.offsets[nonempty]
    salts = np.random.default_rng(seed).integers(1, 2**63, num_perm, dtype=np.uint64)
    for i, salt in enumerate(salts):
        hv = mix64(sets.values ^ salt)
        sig[nonempty, i] = np.minimum.reduceat(hv, starts)
    return sig


def jaccard(a: "np.ndarray", b: "np.ndarray") -> float:
    import numpy as np

    if not len(a) and not len(b):
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def text_near_duplicates(train_texts: Sequence[str], test_texts: Sequence[str], threshold: float, k: int,
                         num_perm: int, bands: int, seed: int, max_candidates: int = 50
                         ) -> "tuple[np.ndarray, np.ndarray, dict]":
    """Best training match per test text among LSH candidates, by exact Jaccard of shingle sets:
    (jaccard or 0, train row or -1, stats)."""
    import numpy as np

    tr, te = shingle_sets(train_texts, k), shingle_sets(test_texts, k)
    sig_tr, sig_te = minhash_signatures(tr, num_perm, seed), minhash_signatures(te, num_perm, seed)
    rows = num_perm // bands
    cand_q, cand_t = [], []
    ok_tr = np.flatnonzero(tr.sizes > 0)
    ok_te = np.flatnonzero(te.sizes > 0)
    for b in range(bands):
        def band_key(sig, ids):
            h = np.full(len(ids), b + 1, dtype=np.uint64)
            for j in range(b * rows, (b + 1) * rows):
                h = combine(h, sig[ids, j].copy())
            return h

        kt, kq = band_key(sig_tr, ok_tr), band_key(sig_te, ok_te)
        order = np.argsort(kt, kind="stable")
        sk = kt[order]
        lo, hi = np.searchsorted(sk, kq, "left"), np.searchsorted(sk, kq, "right")
        cnt = np.minimum(hi - lo, max_candidates)
        has = np.flatnonzero(cnt > 0)
        if len(has):
            c = cnt[has]
            qi = np.repeat(has, c)
            first = np.repeat(lo[has] - np.cumsum(np.r_[0, c[:-1]]), c)
            cand_q.append(ok_te[qi])
            cand_t.append(ok_tr[order[first + np.arange(len(qi))]])
    best_j = np.zeros(len(test_texts))
    best_t = np.full(len(test_texts), -1, dtype=np.int64)
    n_pairs = 0
    if cand_q:
        q = np.concatenate(cand_q)
        t = np.concatenate(cand_t)
        pair = np.unique(np.stack([q, t], axis=1), axis=0)
        n_pairs = len(pair)
        for qi, ti in pair:
            j = jaccard(te.doc(int(qi)), tr.doc(int(ti)))
            if j > best_j[qi] or (j == best_j[qi] and best_t[qi] > ti):
                best_j[qi], best_t[qi] = j, ti
    found = best_j >= threshold
    stats = {"candidate_pairs": n_pairs, "bands": bands, "rows_per_band": rows, "num_perm": num_perm,
             "shingle_tokens": k,
             "lsh_recall_at_threshold": round(1 - (1 - threshold ** rows) ** bands, 6)}
    best_t[~found & (best_j == 0)] = -1
    return best_j, best_t, stats
