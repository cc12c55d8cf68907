"""Near-duplicate search between a test set and a training set.

Tables and arrays are embedded in a numeric *space*: numeric columns robustly scaled (median, IQR),
categorical columns (and which numbers are missing) turned into a *block* key that must match
exactly. Exact duplicates are removed from the training side first, so repeated rows never shrink
the distance scale.

Whether a test row is a near-copy is decided against the training set's own geometry, two ways:

- **local ratio** (density-free): with d1, d2 the distances from a test row to its nearest and second
  nearest training rows, ``mu = d2 / d1`` follows a Pareto law ``P(mu > x) = x ** -m`` for an ordinary
  row wherever the density is locally smooth (Facco et al. 2017, "TwoNN"), whatever that density is;
  ``m`` is the intrinsic dimension, estimated from the same ratio on training rows (median, so robust
  to near-copies inside the training set, capped at the space's dimension). A near-copy has d1 tiny and
  d2 ordinary. Applies while d1 is below the distance guard ``max_ratio x`` the lower quartile of
  training nearest-neighbour distances.
- **global distance**: training nearest-neighbour distances follow a Weibull law near zero, fitted on
  their quartiles; P(nearest distance <= d1) for an ordinary row (catches a near-copy of a training
  row that has near-copies of its own in training, where d2 is tiny too).

Each test row gets a p-value (the smaller of the two, doubled), and the rows flagged are those the
Benjamini-Hochberg procedure rejects at level ``q``: on a clean test set nothing is flagged with
probability about 1 - q, and among flagged rows the expected share of ordinary ones is at most q.

Search is exact (blocked brute force in float32, the best candidates recomputed in float64) when the
number of same-block test x train pairs is within budget, and otherwise a fixed-radius E2LSH grid at
the distance guard: random Gaussian projections cut into cells 4 x guard wide, with as many cells per
table and tables as it takes to reach ``target_recall`` for a pair exactly at the guard.
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
#: blocks of at least this many rows in at most this many dimensions are searched with a KD-tree
KD_TREE_MAX_DIMS = 12
KD_TREE_MIN_ROWS = 256
#: training rows the E2LSH planner measures cell crowding on
PLAN_SAMPLE = 20000
#: text LSH: training rows kept per (band, bucket), the first in row order
TEXT_MAX_CANDIDATES = 50


@dataclass
class Space:
    """Training and test rows as scaled numeric coordinates plus an exact-match block key."""

    train: "np.ndarray"  # float64 (n_train, d)
    test: "np.ndarray"  # float64 (n_test, d)
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
    X = np.column_stack(tr_cols) if d else np.zeros((n_tr, 0))
    Y = np.column_stack(te_cols) if d else np.zeros((n_te, 0))
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
    return Space(np.ascontiguousarray(a), np.ascontiguousarray(b), tr_block, te_block, notes=notes)


def space_row_keys(X: "np.ndarray", block: "np.ndarray") -> "np.ndarray":
    """A hash per row of (block, coordinates): equal keys are the same point of the space."""
    import numpy as np

    h = mix64(block ^ np.uint64(0x9E3779B97F4A7C15))  # mixed first: raw block ids must not cancel against coordinates
    bits = (np.ascontiguousarray(X, dtype=np.float64) + 0.0).view(np.uint64)
    for j in range(X.shape[1]):
        h = combine(h, bits[:, j])
    return h


# ----------------------------------------------------------------------------- brute force


@dataclass
class Neighbours:
    """The nearest and second-nearest index rows of each query (-1 / inf when there is none)."""

    d1: "np.ndarray"
    i1: "np.ndarray"
    d2: "np.ndarray"
    i2: "np.ndarray"
    pairs: int = 0

    @classmethod
    def empty(cls, n: int) -> "Neighbours":
        import numpy as np

        return cls(np.full(n, np.inf), np.full(n, -1, np.int64), np.full(n, np.inf), np.full(n, -1, np.int64))


def _blocks(block: "np.ndarray") -> "tuple[np.ndarray, np.ndarray, np.ndarray]":
    """(sort order, unique block keys, start offsets into the order; one more offset at the end)."""
    import numpy as np

    order = np.argsort(block, kind="stable")
    keys, starts = np.unique(block[order], return_index=True)
    return order, keys, np.append(starts, len(order))


def _exact_dist(Q: "np.ndarray", X: "np.ndarray") -> "np.ndarray":
    """Euclidean distances of matched rows, in float64 without cancellation."""
    import numpy as np

    diff = np.asarray(Q, dtype=np.float64) - np.asarray(X, dtype=np.float64)
    return np.sqrt(np.einsum("...j,...j->...", diff, diff))


def nearest(queries: "np.ndarray", q_block: "np.ndarray", index: "np.ndarray", i_block: "np.ndarray",
            self_ids: "np.ndarray | None" = None, chunk_elems: int = 1 << 22, shortlist: int = 4) -> Neighbours:
    """Exact two nearest index rows (same block) of every query.

    ``self_ids[i]`` is the index row that query i is (left out of its own search). Candidates are
    ranked with |x|^2 - 2 q.x in float32; the best ``shortlist`` are recomputed in float64 and sorted.
    """
    import numpy as np

    nq = len(queries)
    out = Neighbours.empty(nq)
    order, keys, starts = _blocks(i_block)
    pos = np.searchsorted(keys, q_block)
    ok = pos < len(keys)
    ok[ok] = keys[pos[ok]] == q_block[ok]
    q_order = np.argsort(np.where(ok, pos, -1), kind="stable")
    q_order = q_order[ok[q_order]]
    q_pos = pos[q_order]
    bounds = np.flatnonzero(np.diff(q_pos)) + 1
    groups = np.split(np.arange(len(q_order)), bounds) if len(q_order) else []
    for group in groups:
        qi = q_order[group]
        b = q_pos[group[0]]
        members = order[starts[b]:starts[b + 1]]
        Xb = index[members]
        if index.shape[1] <= KD_TREE_MAX_DIMS and len(members) >= KD_TREE_MIN_ROWS:
            _tree_block(queries[qi], Xb, members, qi, out, self_ids)
            out.pairs += len(qi) * len(members)
            continue
        Xb32 = Xb.astype(np.float32)
        xsq = np.einsum("ij,ij->i", Xb32, Xb32)
        k = min(shortlist, len(members))
        rows_per = max(1, chunk_elems // max(len(members), 1))
        member_pos = {int(m): j for j, m in enumerate(members)} if self_ids is not None else None
        for s in range(0, len(qi), rows_per):
            qs = qi[s:s + rows_per]
            Q = queries[qs]
            D = xsq[None, :] - 2.0 * (Q.astype(np.float32) @ Xb32.T)
            if member_pos is not None:
                for r, own in enumerate(self_ids[qs]):
                    j = member_pos.get(int(own))
                    if j is not None:
                        D[r, j] = np.inf
            top = np.argpartition(D, k - 1, axis=1)[:, :k] if k < len(members) else np.tile(np.arange(len(members)), (len(qs), 1))
            valid = np.isfinite(np.take_along_axis(D, top, axis=1))
            cand = members[top]
            dist = _exact_dist(Q[:, None, :], index[cand])
            dist[~valid] = np.inf
            srt = np.argsort(dist, axis=1)
            dist = np.take_along_axis(dist, srt, axis=1)
            cand = np.take_along_axis(cand, srt, axis=1)
            out.d1[qs], out.i1[qs] = dist[:, 0], np.where(np.isfinite(dist[:, 0]), cand[:, 0], -1)
            if k >= 2:
                out.d2[qs], out.i2[qs] = dist[:, 1], np.where(np.isfinite(dist[:, 1]), cand[:, 1], -1)
            out.pairs += len(qs) * len(members)
    return out


def _tree_block(Q: "np.ndarray", Xb: "np.ndarray", members: "np.ndarray", qi: "np.ndarray", out: Neighbours,
                self_ids: "np.ndarray | None") -> None:
    """Two nearest rows of one block with a KD-tree (low dimensions): exact float64 distances."""
    import numpy as np
    from sklearn.neighbors import KDTree

    extra = 1 if self_ids is not None else 0
    k = min(2 + extra, len(members))
    dist, ind = KDTree(Xb, leaf_size=32).query(Q, k=k)
    cand = members[ind]
    if self_ids is not None:
        own = cand == self_ids[qi][:, None]
        dist = np.where(own, np.inf, dist)
        srt = np.argsort(dist, axis=1, kind="stable")
        dist, cand = np.take_along_axis(dist, srt, axis=1), np.take_along_axis(cand, srt, axis=1)
    out.d1[qi] = dist[:, 0]
    out.i1[qi] = np.where(np.isfinite(dist[:, 0]), cand[:, 0], -1)
    if dist.shape[1] >= 2:
        out.d2[qi] = dist[:, 1]
        out.i2[qi] = np.where(np.isfinite(dist[:, 1]), cand[:, 1], -1)


def block_pairs(q_block: "np.ndarray", i_block: "np.ndarray") -> int:
    """How many same-block (query, index) pairs a brute-force search compares."""
    import numpy as np

    keys, counts = np.unique(i_block, return_counts=True)
    qkeys, qcounts = np.unique(q_block, return_counts=True)
    pos = np.searchsorted(keys, qkeys)
    ok = pos < len(keys)
    ok[ok] = keys[pos[ok]] == qkeys[ok]
    return int((qcounts[ok].astype(np.int64) * counts[pos[ok]]).sum())


# ----------------------------------------------------------------------------- thresholds


def weibull_shape(r25: float, r75: float) -> float:
    """Shape m of a Weibull law through the given quartiles (inf when they coincide)."""
    if not (r25 > 0 and r75 > 0):
        return float("nan")
    if r75 <= r25 * (1 + 1e-9):
        return float("inf")
    return math.log(_LOG_Q75 / _LOG_Q25) / math.log(r75 / r25)


@dataclass
class Reference:
    """The training set's own neighbour distances: the null model a test row is compared with."""

    sample_rows: int
    distances_used: int
    r25: float
    r75: float
    weibull_shape: float
    guard: float  # the local ratio rule applies only below this d1
    twonn_dimension: float
    index_rows: int
    rescaled_from: int | None

    @property
    def weibull_scale(self) -> float:
        m = self.weibull_shape
        return self.r25 / _LOG_Q25 ** (1.0 / m) if math.isfinite(m) and m > 0 else float("nan")

    def metrics(self) -> dict:
        def r(v: float) -> float | None:
            return round(v, 6) if math.isfinite(v) else None

        return {
            "reference_sample_rows": self.sample_rows,
            "reference_distances_used": self.distances_used,
            "reference_nn_distance_q25": r(self.r25),
            "reference_nn_distance_q75": r(self.r75),
            "weibull_shape": r(self.weibull_shape),
            "twonn_dimension": r(self.twonn_dimension),
            "distance_guard": self.guard,
            "reference_index_rows": self.index_rows,
            **({"reference_rescaled_from_rows": self.rescaled_from} if self.rescaled_from else {}),
        }


def reference_sample(n: int, rng: "np.random.Generator", sample_rows: int = 2000,
                     max_index_rows: int = 200_000) -> "tuple[np.ndarray, np.ndarray]":
    """Which distinct training rows the null model uses: (index rows searched, sorted positions into the
    index of the sampled query rows). Draws from ``rng`` in a fixed order, so every engine samples alike."""
    import numpy as np

    index_ids = np.arange(n)
    if n > max_index_rows:
        index_ids = np.sort(rng.choice(n, max_index_rows, replace=False))
    k = min(sample_rows, len(index_ids))
    local = np.sort(rng.choice(len(index_ids), k, replace=False))
    return index_ids, local


def reference_fit(nb: Neighbours, n: int, dims: int, index_rows: int, max_ratio: float) -> Reference | None:
    """The null model from the sampled rows' two nearest other rows in the index (``nb``, one entry per
    sampled row); ``n`` distinct training rows in all, ``index_rows`` of them searched."""
    import numpy as np

    good = np.isfinite(nb.d1) & (nb.d1 > 0)
    d = nb.d1[good]
    if len(d) < 20:
        return None
    subset = index_rows < n
    r25, r75 = (float(v) for v in np.percentile(d, [25, 75]))
    m_w = weibull_shape(r25, r75)
    if subset and math.isfinite(m_w) and m_w > 0:
        factor = (index_rows / n) ** (1.0 / m_w)
        r25, r75 = r25 * factor, r75 * factor
    both = good & np.isfinite(nb.d2)
    mu = nb.d2[both] / nb.d1[both]
    med = float(np.median(mu)) if len(mu) >= 20 else float("nan")
    m2 = math.log(2.0) / math.log(med) if med > 1 else float("inf")
    m2 = min(m2, float(dims)) if math.isfinite(med) else float(dims)
    return Reference(len(nb.d1), int(len(d)), r25, r75, m_w, max_ratio * r25, m2, int(index_rows),
                     n if subset else None)


def reference(space_train: "np.ndarray", block: "np.ndarray", rng: "np.random.Generator", max_ratio: float,
              sample_rows: int = 2000, max_index_rows: int = 200_000) -> Reference | None:
    """The null model from the two nearest other (distinct) training rows of a sample of training
    rows; None when fewer than 20 sampled rows have a neighbour.

    With more than ``max_index_rows`` distinct rows, the sample is searched within a random subset of
    that size and the distance quartiles rescaled to the full size with the fitted Weibull shape
    (distances scale as (subset / full) ** (1 / m)); the TwoNN ratio is scale-free.
    """
    n, dims = space_train.shape
    index_ids, local = reference_sample(n, rng, sample_rows, max_index_rows)
    nb = nearest(space_train[index_ids[local]], block[index_ids[local]], space_train[index_ids], block[index_ids],
                 self_ids=local)
    return reference_fit(nb, n, dims, len(index_ids), max_ratio)


def refine_beyond_radius(found: Neighbours, eligible: "np.ndarray", test: "np.ndarray", t_block: "np.ndarray",
                         index: "np.ndarray", i_block: "np.ndarray", guard: float, radius: float,
                         budget: float) -> "tuple[int, np.ndarray]":
    """After the fixed-radius E2LSH search: the rows whose ratio rule applies (nearest within ``guard``) but
    whose second neighbour the grid did not see inside ``radius`` would get the radius as second distance,
    which under-states the ratio of exactly the near-copies (at 1M rows the rule missed 2% of them). They are
    few, so when they times the index rows fit ``budget`` they are searched exactly, in place in ``found``.

    Returns (how many such rows, the per-row searched radius for :func:`p_values`: inf where searched
    exactly). The Spark engine does the same (``leakage_neighbours_spark._refine``)."""
    import numpy as np

    beyond = eligible & (found.i1 >= 0) & (found.d1 > 0) & (found.d1 <= guard) & ~(found.d2 < radius)
    rows = np.flatnonzero(beyond)
    searched = np.full(len(found.d1), float(radius))
    if not len(rows) or len(rows) * len(index) > budget:
        return len(rows), searched
    exact = nearest(test[rows], t_block[rows], index, i_block)
    ok = exact.i1 >= 0
    at = rows[ok]
    found.d1[at], found.i1[at], found.d2[at], found.i2[at] = exact.d1[ok], exact.i1[ok], exact.d2[ok], exact.i2[ok]
    searched[at] = np.inf
    return len(rows), searched


def p_values(nb: Neighbours, ref: Reference, searched_radius: "float | np.ndarray | None" = None) -> "np.ndarray":
    """Per test row, how surprising its nearest training row is for an ordinary row (small = near-copy).

    Local rule: P(d2 / d1 >= observed) = ratio ** -m (TwoNN), for d1 below the distance guard. Global
    rule: P(nearest distance <= d1) from the Weibull fit. The row's p-value is the smaller, doubled
    (Bonferroni over the two rules). After a fixed-radius search, a d2 beyond the radius may not be
    the true second neighbour, so it counts as the radius: the ratio is never inflated (``searched_radius``
    per row: inf for the rows searched exactly).
    """
    import numpy as np

    d1 = nb.d1
    d2 = nb.d2 if searched_radius is None else np.minimum(nb.d2, searched_radius)
    usable = (nb.i1 >= 0) & (d1 > 0) & np.isfinite(d1)
    p = np.ones(len(d1))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        local = usable & (d1 <= ref.guard)
        p_local = np.where(local, np.power(np.where(local, d2 / d1, 1.0), -ref.twonn_dimension), 1.0)
        scale, m_w = ref.weibull_scale, ref.weibull_shape
        if math.isfinite(scale) and scale > 0:
            p_global = np.where(usable, -np.expm1(-np.power(d1 / scale, m_w)), 1.0)
        else:
            p_global = np.ones(len(d1))
    p[usable] = np.minimum(1.0, 2.0 * np.minimum(p_local, p_global)[usable])
    return np.nan_to_num(p, nan=1.0)


def bh_cutoff(p: "np.ndarray", q: float, n: int | None = None) -> float:
    """Benjamini-Hochberg: the largest p-value rejected at false discovery rate q (0.0: none).

    ``n``: the number of hypotheses when ``p`` holds only some of them (the others' p-values exceed q,
    so they cannot be rejected and only count)."""
    import numpy as np

    n = len(p) if n is None else n
    if not n or not len(p):
        return 0.0
    srt = np.sort(p)
    ok = np.flatnonzero(srt <= q * np.arange(1, len(srt) + 1) / n)
    return float(srt[ok[-1]]) if len(ok) else 0.0


def equivalent_thresholds(ref: Reference, cutoff: float) -> dict:
    """The ratio and the distance at which each rule alone reaches the p-value cutoff."""
    a = min(max(cutoff / 2.0, 1e-300), 1.0)
    out: dict = {"p_value_cutoff": cutoff}
    if ref.twonn_dimension > 0:
        out["ratio_threshold"] = round(a ** (-1.0 / ref.twonn_dimension), 6)
    scale, m_w = ref.weibull_scale, ref.weibull_shape
    if math.isfinite(scale) and math.isfinite(m_w) and m_w > 0:
        out["distance_threshold"] = scale * (-math.log1p(-a)) ** (1.0 / m_w) if a < 1 else float("inf")
    return out


# ----------------------------------------------------------------------------- scalable search


@dataclass
class GridPlan:
    cells_per_table: int
    tables: int
    width: float
    pair_recall: float  # collision probability of a pair exactly at the radius


def cell_keys(X: "np.ndarray", block: "np.ndarray", G: "np.ndarray", offset: "np.ndarray", width: float,
              chunk: int = 1 << 18) -> "np.ndarray":
    """Each row's E2LSH cell in one table: a hash of its block and floor((x . G + offset) / width)."""
    import numpy as np

    h = mix64(block ^ np.uint64(0x9E3779B97F4A7C15))  # mixed first: raw block ids must not cancel against coordinates
    out = np.empty(len(X), dtype=np.uint64)
    for s in range(0, len(X), chunk):
        cells = np.floor((X[s:s + chunk] @ G + offset) / width).astype(np.int64)
        hs = h[s:s + chunk]
        for j in range(cells.shape[1]):
            hs = combine(hs, cells[:, j].view(np.uint64).copy())
        out[s:s + chunk] = hs
    return out


def plan_grid(X: "np.ndarray", block: "np.ndarray", radius: float, rng: "np.random.Generator",
              target_recall: float = 0.99, max_tables: int = 64, max_crowd: float = 4.0,
              population: int | None = None) -> GridPlan:
    """Projections per table: the fewest keeping a row's expected same-cell training rows under
    ``max_crowd``; tables: enough to reach ``target_recall`` for a pair exactly ``radius`` apart.

    ``population``: ``X`` is already a sample (PLAN_SAMPLE rows drawn as below) of that many rows."""
    import numpy as np

    width = 4.0 * radius
    q = 1.0 - math.sqrt(2.0 / math.pi) * radius / width  # P(same cell along one projection) at the radius
    if population is not None:
        sample, sb = X, block
    elif len(X) > PLAN_SAMPLE:
        idx = rng.choice(len(X), PLAN_SAMPLE, replace=False)
        sample, sb = X[idx], block[idx]
    else:
        sample, sb = X, block
    scale_up = (population or len(X)) / len(sample)
    p = 1
    while p < 32:
        G = rng.standard_normal((X.shape[1], p))
        off = rng.uniform(0, width, p)
        _, counts = np.unique(cell_keys(sample, sb, G, off, width), return_counts=True)
        c = counts.astype(np.float64)
        crowd = float((c * (c - 1)).sum() / c.sum()) * scale_up
        if crowd <= max_crowd:
            break
        p += 1
    collide = q ** p
    tables = int(math.ceil(math.log(1 - target_recall) / math.log(1 - collide))) if collide < 1 else 1
    tables = max(1, min(tables, max_tables))
    return GridPlan(p, tables, width, 1 - (1 - collide) ** tables)


def _merge_top2(nb: Neighbours, q: "np.ndarray", t: "np.ndarray", d: "np.ndarray") -> None:
    """Fold candidate pairs (query q, index row t, distance d) into the running two nearest, in place."""
    import numpy as np

    touched = np.unique(q)
    cur_t = np.concatenate([nb.i1[touched], nb.i2[touched]])
    keep = cur_t >= 0
    Q = np.concatenate([np.concatenate([touched, touched])[keep], q])
    T = np.concatenate([cur_t[keep], t])
    D = np.concatenate([np.concatenate([nb.d1[touched], nb.d2[touched]])[keep], d])
    order = np.argsort(D, kind="stable")
    order = order[np.argsort(Q[order], kind="stable")]  # by query, then distance
    Q, T, D = Q[order], T[order], D[order]
    new_q = np.r_[True, Q[1:] != Q[:-1]]
    # the same pair found in several tables has the same distance: adjacent after the sort
    distinct = new_q | np.r_[True, T[1:] != T[:-1]]
    Q, T, D, new_q = Q[distinct], T[distinct], D[distinct], new_q[distinct]
    idx = np.arange(len(Q))
    rank = idx - np.maximum.accumulate(np.where(new_q, idx, 0))
    r0, r1 = rank == 0, rank == 1
    nb.d1[Q[r0]], nb.i1[Q[r0]] = D[r0], T[r0]
    nb.d2[Q[r1]], nb.i2[Q[r1]] = D[r1], T[r1]


def grid_search(train: "np.ndarray", t_block: "np.ndarray", test: "np.ndarray", q_block: "np.ndarray",
                radius: float, rng: "np.random.Generator", target_recall: float = 0.99,
                max_pairs_per_pass: int = 1 << 24) -> "tuple[Neighbours, GridPlan]":
    """Two nearest training rows within about ``radius`` of each test row, through an E2LSH grid.

    Rows are found only if they share a cell in some table (probability >= the plan's recall for a
    row exactly ``radius`` away, higher closer); distances are exact (float64).
    """
    import numpy as np

    plan = plan_grid(train, t_block, radius, rng, target_recall)
    nb = Neighbours.empty(len(test))
    buf: list = []
    buffered = 0
    for _ in range(plan.tables):
        G = rng.standard_normal((train.shape[1], plan.cells_per_table))
        off = rng.uniform(0, plan.width, plan.cells_per_table)
        tk = cell_keys(train, t_block, G, off, plan.width)
        qk = cell_keys(test, q_block, G, off, plan.width)
        order = np.argsort(tk, kind="stable")
        sk = tk[order]
        lo = np.searchsorted(sk, qk, "left")
        cnt = np.searchsorted(sk, qk, "right") - lo
        has = np.flatnonzero(cnt > 0)
        if not len(has):
            continue
        cum = np.cumsum(cnt[has])
        start = 0
        while start < len(has):
            base = cum[start - 1] if start else 0
            stop = max(int(np.searchsorted(cum, base + max_pairs_per_pass, "right")), start + 1)
            rows = has[start:stop]
            c = cnt[rows]
            qi = np.repeat(rows, c)
            offs = np.arange(len(qi)) - np.repeat(np.cumsum(c) - c, c)
            ti = order[np.repeat(lo[rows], c) + offs]
            buf.append((qi, ti, _exact_dist(test[qi], train[ti])))
            buffered += len(qi)
            nb.pairs += len(qi)
            if buffered >= max_pairs_per_pass:
                _merge_top2(nb, *(np.concatenate(x) for x in zip(*buf)))
                buf, buffered = [], 0
            start = stop
    if buf:
        _merge_top2(nb, *(np.concatenate(x) for x in zip(*buf)))
    return nb, plan


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
    rng = np.random.default_rng(seed)
    # multiply-shift hashing of the (already mixed) shingle hashes: h_i(x) = (a_i x + b_i) >> 32, a_i odd
    a = rng.integers(1, 2**63, num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, num_perm, dtype=np.uint64)
    base = mix64(sets.values.copy())
    hv = np.empty_like(base)
    for i in range(num_perm):
        np.multiply(base, a[i], out=hv)
        hv += b[i]
        hv >>= np.uint64(32)
        sig[nonempty, i] = np.minimum.reduceat(hv, starts)
    return sig


def jaccard(a: "np.ndarray", b: "np.ndarray") -> float:
    import numpy as np

    if not len(a) and not len(b):
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)


def band_keys(sig: "np.ndarray", bands: int) -> "np.ndarray":
    """(docs, bands) uint64 LSH keys: band b hashes signature columns b * rows .. (b + 1) * rows - 1."""
    import numpy as np

    rows = sig.shape[1] // bands
    out = np.empty((len(sig), bands), dtype=np.uint64)
    for b in range(bands):
        h = np.full(len(sig), b + 1, dtype=np.uint64)
        for j in range(b * rows, (b + 1) * rows):
            h = combine(h, sig[:, j].copy())
        out[:, b] = h
    return out


def text_lsh_stats(candidate_pairs: int, threshold: float, k: int, num_perm: int, bands: int) -> dict:
    """The text search's metrics: its LSH shape and the chance a pair exactly at the threshold collides."""
    rows = num_perm // bands
    return {"candidate_pairs": int(candidate_pairs), "bands": bands, "rows_per_band": rows, "num_perm": num_perm,
            "shingle_tokens": k, "lsh_recall_at_threshold": round(1 - (1 - threshold ** rows) ** bands, 6)}


def text_near_duplicates(train_texts: Sequence[str], test_texts: Sequence[str], threshold: float, k: int,
                         num_perm: int, bands: int, seed: int, max_candidates: int = TEXT_MAX_CANDIDATES
                         ) -> "tuple[np.ndarray, np.ndarray, dict]":
    """Best training match per test text among LSH candidates, by exact Jaccard of shingle sets:
    (jaccard or 0, train row or -1, stats)."""
    import numpy as np

    tr, te = shingle_sets(train_texts, k), shingle_sets(test_texts, k)
    sig_tr, sig_te = minhash_signatures(tr, num_perm, seed), minhash_signatures(te, num_perm, seed)
    cand_q, cand_t = [], []
    ok_tr = np.flatnonzero(tr.sizes > 0)
    ok_te = np.flatnonzero(te.sizes > 0)
    keys_tr, keys_te = band_keys(sig_tr[ok_tr], bands), band_keys(sig_te[ok_te], bands)
    for b in range(bands):
        kt, kq = keys_tr[:, b], keys_te[:, b]
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
    stats = text_lsh_stats(n_pairs, threshold, k, num_perm, bands)
    best_t[~found & (best_j == 0)] = -1
    return best_j, best_t, stats
