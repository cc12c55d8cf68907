"""Leakage-family checks: train/test exact and near duplicates, target leakage, group and temporal leakage.

Rows in findings are 0-based data rows of the TEST file; ``details.matches`` pairs every flagged
test row with the training row it matches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from auditor.checks import leakage_hashing as lh
from auditor.registry import Check, Params
from auditor.report import Finding, Outcome

if TYPE_CHECKING:
    import numpy as np

    from auditor.engine import AuditContext
    from auditor.inputs import Dataset

LEAKAGE_CONTROLS = (
    "nist-ai-rmf:MEASURE 2.1", "nist-ai-rmf:MEASURE 2.3", "nist-ai-rmf:MAP 2.3", "iso-42001:A.7.4",
    "iso-42001:A.6.2.4", "eu-ai-act:Art.10(3)", "eu-ai-act:Art.15(3)",
)


def _status(fraction: float, count: int, max_fraction: float) -> str:
    return "fail" if fraction > max_fraction else "warn" if count else "pass"


def compared_columns(train: "Dataset", test: "Dataset", include_label: bool, columns: list[str] | None,
                     ignore: list[str] = ()) -> list[str]:
    """Columns compared between the sets: feature columns both share (plus the label when asked), in training order."""
    def names(ds) -> list[str]:  # a SparkDataset has no in-memory table
        return list(ds.columns) if getattr(ds, "is_spark", False) else list(ds.table().columns)

    if columns is not None:
        missing = [c for c in columns if c not in names(train) or c not in names(test)]
        if missing:
            raise ValueError(f"column(s) {missing} not in both the training and the test set")
        return list(columns)
    test_cols = set(names(test))
    cols = [c for c in train.feature_columns if c in test_cols and c not in set(ignore)]
    if include_label and train.label and test.label == train.label and train.label in test_cols:
        cols.append(train.label)
    return cols


NO_SHARED_TEXT = "mode 'text' but no text columns are shared by the training and test sets"


def near_mode(mode: str, train: "Dataset", test: "Dataset", cols: list[str]) -> "tuple[str, list[str]]":
    """(the near-duplicate mode to run, the compared columns holding text on either side): ``auto`` is
    text when any compared column holds text, else table. Both engines decide it here."""
    text_cols = [c for c in cols if c in set(train.text_columns()) | set(test.text_columns())]
    if mode == "auto":
        mode = "text" if text_cols else "table"
    return mode, text_cols


def exact_matches(train: "Dataset", test: "Dataset", include_label: bool = False, columns: list[str] | None = None,
                  ignore: list[str] = ()) -> "tuple[lh.Matches, list[str]]":
    """Test rows equal to a training row (value-level canonical forms), verified value by value."""
    import numpy as np

    if train.is_array and test.is_array:
        if train.X.shape[1:] != test.X.shape[1:]:
            return lh.Matches(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)), []
        h_tr, h_te = lh.array_row_hashes(train.X), lh.array_row_hashes(test.X)
        if include_label:
            h_tr = lh.combine(h_tr, lh.column_hashes(train.y))
            h_te = lh.combine(h_te, lh.column_hashes(test.y))
        m = lh.match_hashes(h_tr, h_te)
        if len(m.test_rows):  # verify: identical values (NaN == NaN)
            a = train.X.reshape(len(train.X), -1)[m.train_rows].astype(np.float64)
            b = test.X.reshape(len(test.X), -1)[m.test_rows].astype(np.float64)
            ok = np.all((a == b) | (np.isnan(a) & np.isnan(b)), axis=1)
            if include_label:
                ok &= train.y[m.train_rows] == test.y[m.test_rows]
            m = lh.Matches(m.test_rows[ok], m.train_rows[ok], m.train_copies[ok])
        return m, ["X"] + (["y"] if include_label else [])
    if train.is_array or test.is_array:
        raise ValueError("one dataset is an array (.npz) and the other a table: rows cannot be compared")
    cols = compared_columns(train, test, include_label, columns, ignore)
    tr, te = train.frame, test.frame
    f32 = {c for c in cols if str(tr[c].dtype).lower() == "float32" or str(te[c].dtype).lower() == "float32"}
    m = lh.match_hashes(lh.frame_row_hashes(tr, cols, f32), lh.frame_row_hashes(te, cols, f32))
    if len(m.test_rows):  # verify the hash matches value by value: no false positives
        ok = np.ones(len(m.test_rows), dtype=bool)
        for c in cols:
            ca = lh.canonical(tr[c].iloc[m.train_rows].reset_index(drop=True), c in f32)
            cb = lh.canonical(te[c].iloc[m.test_rows].reset_index(drop=True), c in f32)
            ok &= ca.equals(cb)
        m = lh.Matches(m.test_rows[ok], m.train_rows[ok], m.train_copies[ok])
    return m, cols


# ----------------------------------------------------------------------------- exact duplicates


class ExactParams(Params):
    include_label: bool = Field(False, description="a test row leaks only if its label matches too")
    columns: list[str] | None = Field(None, description="compare only these columns (default: the shared feature columns)")
    ignore: list[str] = Field(default_factory=list, description="feature columns to leave out of the comparison")
    max_fraction: float = Field(0.0, ge=0, le=1, description="fail when more than this fraction of test rows are copies")


class ExactDuplicates(Check):
    id = "leakage.exact_duplicates"
    title = "Test rows that are copies of training rows"
    family = "leakage"
    description = (
        "Test rows whose feature values equal a training row's (label excluded by default), values compared in "
        "canonical form: 1 == 1.0 == '1', whitespace folded, NaN == NaN. Every such test row listed with the "
        "training row it copies."
    )
    requires = ("train", "test")
    default_severity = "high"
    controls = LEAKAGE_CONTROLS + ("mitre-atlas:AML.T0059",)
    Params = ExactParams

    spark_native = True

    def run(self, ctx: "AuditContext", params: ExactParams) -> Outcome:
        import numpy as np

        ctx.progress.step("hashing training and test rows")
        m, cols = exact_matches(ctx.train, ctx.test, params.include_label, params.columns, params.ignore)
        if not cols:
            return Outcome.skipped("the training and test sets share no columns to compare")
        same_label = None
        if len(m.test_rows):
            y_tr, y_te = ctx.train.labels(), ctx.test.labels()
            if y_tr is not None and y_te is not None and not params.include_label:
                same = lh.canonical(np.asarray(y_tr)[m.train_rows]).equals(lh.canonical(np.asarray(y_te)[m.test_rows]))
                same_label = int(same.sum())
        return exact_outcome(params, ctx.test.n_rows, ctx.train.n_rows, len(cols), m, same_label)

    def run_spark(self, ctx: "AuditContext", params: ExactParams) -> Outcome:
        from auditor.checks.leakage_exact_spark import exact_duplicates

        return exact_duplicates(ctx, params)


def exact_outcome(params: ExactParams, n_test: int, n_train: int, n_cols: int, m: "lh.Matches",
                  same_label: int | None) -> Outcome:
    """Metrics, findings and verdict of leakage.exact_duplicates from the matches (test rows ascending), whichever
    engine found them; ``same_label``: how many matched pairs share their label (None when not compared)."""
    import numpy as np

    fraction = len(m.test_rows) / n_test
    metrics: dict = {
        "max_fraction": params.max_fraction, "include_label": params.include_label,
        "columns_compared": n_cols, "test_rows": n_test, "train_rows": n_train,
        "leaked_rows": int(len(m.test_rows)), "leaked_fraction": round(fraction, 6),
        "distinct_train_rows_copied": int(len(np.unique(m.train_rows))),
    }
    findings = []
    if len(m.test_rows):
        if same_label is not None:
            metrics["leaked_rows_same_label"] = same_label
        findings.append(Finding(
            f"test: {len(m.test_rows)} of {n_test} rows ({fraction:.2%}) are exact copies of training rows",
            dataset="test", rows=tuple(int(r) for r in m.test_rows),
            details={"matches": [[int(a), int(b)] for a, b in zip(m.test_rows, m.train_rows)],
                     "match_columns": ["test_row", "train_row"],
                     "train_copies": [int(c) for c in m.train_copies]},
        ))
    return Outcome(status=_status(fraction, len(m.test_rows), params.max_fraction), metrics=metrics, findings=findings)


# ----------------------------------------------------------------------------- near duplicates


class NearParams(Params):
    mode: Literal["auto", "table", "text"] = Field(
        "auto", description="auto: arrays as arrays, tables with text columns as text, other tables as tables"
    )
    false_alarm: float = Field(
        0.01, gt=0, lt=0.5,
        description="false discovery rate q of the Benjamini-Hochberg procedure over the test rows' p-values: "
                    "a clean test set raises an alarm with probability about q, and at most a share q of the "
                    "flagged rows is expected to be ordinary",
    )
    max_ratio: float = Field(0.5, gt=0, le=1, description="distance guard of the ratio rule: this fraction of the lower quartile of training nearest-neighbour distances")
    threshold: float | None = Field(None, gt=0, description="also flag any test row this close (scaled units) to a training row")
    max_fraction: float = Field(0.0, ge=0, le=1, description="fail when more than this fraction of test rows are near-copies")
    reference_rows: int = Field(2000, ge=50, description="training rows sampled to fit the null model (their two nearest neighbours)")
    max_reference_index: int = Field(200_000, ge=1000, description="distinct training rows searched for the reference; more are subsampled and rescaled")
    exact_pairs: float = Field(
        2e9, ge=0, description="above this many same-block test x train pairs, spaces wider than 12 dimensions are "
                               "searched with E2LSH (narrower ones always exactly, with KD-trees; on Spark, always "
                               "E2LSH); after E2LSH, the rows whose second neighbour lies beyond the search radius "
                               "are searched exactly when they times the distinct training rows fit this budget")
    target_recall: float = Field(0.99, gt=0, lt=1, description="E2LSH: probability of finding a pair exactly at the search radius (the distance guard)")
    ignore: list[str] = Field(default_factory=list, description="feature columns to leave out")
    text_jaccard: float = Field(0.7, gt=0, le=1, description="text: Jaccard similarity of word shingle sets that makes a near-copy")
    shingle: int = Field(3, ge=1, le=10, description="text: shingle length in normalised tokens")
    num_perm: int = Field(128, ge=16, le=1024, description="text: MinHash permutations")
    bands: int = Field(32, ge=1, description="text: LSH bands (num_perm / bands rows each)")


def _matches_detail(test_rows, train_rows, scores, score_name: str) -> dict:
    return {"matches": [[int(a), int(b), round(float(s), 6)] for a, b, s in zip(test_rows, train_rows, scores)],
            "match_columns": ["test_row", "train_row", score_name]}


class NearDuplicates(Check):
    id = "leakage.near_duplicates"
    title = "Test rows that are near-copies of training rows"
    family = "leakage"
    description = (
        "Test rows that are not exact copies but lie far closer to a training row than ordinary rows do: numeric "
        "columns robustly scaled with categoricals compared exactly, arrays flattened (PCA when wide), text by "
        "MinHash/LSH confirmed by exact Jaccard. Each row's p-value comes from the training set's own neighbour "
        "distances (exact copies removed first; TwoNN ratio and Weibull distance laws) and rows are flagged by "
        "Benjamini-Hochberg, so the rule neither collapses under duplication nor flags ordinary neighbours in dense data."
    )
    requires = ("train", "test")
    default_severity = "high"
    controls = LEAKAGE_CONTROLS + ("mitre-atlas:AML.T0059",)
    Params = NearParams
    spark_native = True

    def run_spark(self, ctx: "AuditContext", params: NearParams) -> Outcome:
        from auditor.checks.leakage_neighbours_spark import run

        return run(ctx, params)

    def run(self, ctx: "AuditContext", params: NearParams) -> Outcome:
        from threadpoolctl import threadpool_limits

        # skinny matrix products: BLAS threads cost 10-20x more than they save here
        with threadpool_limits(limits=1):
            return self._run(ctx, params)

    def _run(self, ctx: "AuditContext", params: NearParams) -> Outcome:
        import numpy as np

        train, test = ctx.train, ctx.test
        ctx.progress.step("finding exact copies (excluded here)")
        exact, _ = exact_matches(train, test, False, None, params.ignore)
        is_exact = np.zeros(test.n_rows, dtype=bool)
        is_exact[exact.test_rows] = True
        if train.is_array != test.is_array:
            raise ValueError("one dataset is an array (.npz) and the other a table: rows cannot be compared")
        if train.is_array:
            if train.X.shape[1:] != test.X.shape[1:]:
                return Outcome.skipped(f"training and test arrays differ in shape: {train.X.shape[1:]} vs {test.X.shape[1:]}")
            from auditor.checks.leakage_neighbours import array_space

            return self._numeric(ctx, params, array_space(train.X, test.X, ctx.check_seed()), is_exact, "array")
        cols = compared_columns(train, test, False, None, params.ignore)
        mode, text_cols = near_mode(params.mode, train, test, cols)
        if mode == "text":
            return self._text(ctx, params, text_cols, is_exact) if text_cols else Outcome.skipped(NO_SHARED_TEXT)
        from auditor.checks.leakage_neighbours import table_space

        ctx.progress.step("scaling features")
        space = table_space(train.frame, test.frame, cols)
        return self._numeric(ctx, params, space, is_exact, "table")

    def _numeric(self, ctx: "AuditContext", params: NearParams, space, is_exact: "np.ndarray", mode: str) -> Outcome:
        import numpy as np

        from auditor.checks import leakage_neighbours as nb

        if space.dims == 0:
            return Outcome.skipped("no numeric feature varies in training: a near-copy would be an exact copy")
        rng = ctx.rng()
        keys = nb.space_row_keys(space.train, space.train_block)
        _, first = np.unique(keys, return_index=True)
        u_ids = np.sort(first)
        Xu, bu = space.train[u_ids], space.train_block[u_ids]
        ctx.progress.step(f"reference distances on {min(params.reference_rows, len(u_ids))} training rows")
        ref = nb.reference(Xu, bu, rng, params.max_ratio, params.reference_rows, params.max_reference_index)
        metrics: dict = {
            "mode": mode, "false_alarm": params.false_alarm, "max_ratio": params.max_ratio,
            "max_fraction": params.max_fraction, "numeric_columns": len(space.numeric) if mode == "table" else space.dims,
            "block_columns": space.categorical, "space_dims": space.dims, "train_rows": len(space.train),
            "distinct_train_rows": int(len(u_ids)), "test_rows": len(space.test),
            "exact_copies_excluded": int(is_exact.sum()), **space.notes,
        }
        if ref is None:
            return Outcome.skipped("too few training rows have a distinct neighbour in the same categorical block "
                                   "to fit the near-duplicate null model")
        metrics.update(ref.metrics())
        if params.threshold is not None:
            metrics["fixed_distance_threshold"] = params.threshold
        pairs = nb.block_pairs(space.test_block, bu)
        if pairs <= params.exact_pairs or space.dims <= nb.KD_TREE_MAX_DIMS:
            ctx.progress.step(f"exact nearest neighbours ({pairs:.3g} pairs)")
            found = nb.nearest(space.test, space.test_block, Xu, bu)
            radius = None
            metrics.update({"search": "exact", "pairs_compared": int(found.pairs)})
        else:
            radius = max(ref.guard, params.threshold or 0.0)
            ctx.progress.step(f"E2LSH grid search ({pairs:.3g} pairs exceed the exact budget)")
            found, plan = nb.grid_search(Xu, bu, space.test, space.test_block, radius, rng, params.target_recall)
            beyond, radius = nb.refine_beyond_radius(found, ~is_exact, space.test, space.test_block, Xu, bu, ref.guard,
                                                     radius, params.exact_pairs)
            if beyond:
                ctx.progress.step(f"exact search for {beyond} rows whose second neighbour lies beyond the radius")
            metrics.update({"search": "e2lsh", "pairs_compared": int(found.pairs), "lsh_tables": plan.tables,
                            "lsh_projections_per_table": plan.cells_per_table, "lsh_cell_width": plan.width,
                            "lsh_recall_at_radius": round(plan.pair_recall, 6),
                            "rows_second_neighbour_beyond_radius": beyond,
                            "rows_searched_exactly": int(np.isinf(radius).sum())})
        eligible = ~is_exact
        pv = nb.p_values(found, ref, radius)
        cutoff = nb.bh_cutoff(pv[eligible], params.false_alarm)
        near = eligible & (pv <= cutoff) if cutoff > 0 else np.zeros(len(pv), dtype=bool)
        if params.threshold is not None:
            near |= eligible & (found.i1 >= 0) & (found.d1 > 0) & (found.d1 <= params.threshold)
        # with nothing flagged: what the most surprising row alone would have needed
        metrics.update(nb.equivalent_thresholds(ref, cutoff or params.false_alarm / max(int(eligible.sum()), 1)))
        rows = np.flatnonzero(near)
        train_rows = u_ids[found.i1[rows]]
        fraction = len(rows) / max(len(space.test), 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (found.d2 if radius is None else np.minimum(found.d2, radius)) / found.d1
        unflagged = ~near & eligible & (found.i1 >= 0) & (found.d1 > 0)
        if unflagged.any():  # how close the rows not flagged came
            metrics["unflagged_min_p_value"] = float(np.min(pv[unflagged]))
            metrics["unflagged_min_distance"] = round(float(np.min(found.d1[unflagged])), 6)
        metrics.update({"near_duplicate_rows": int(len(rows)), "near_duplicate_fraction": round(fraction, 6),
                        "expected_false_flags_at_most": round(params.false_alarm * len(rows), 4)})
        findings = []
        if len(rows):
            findings.append(Finding(
                f"test: {len(rows)} of {len(space.test)} rows ({fraction:.2%}) are near-copies of training rows "
                f"(far closer to one training row than ordinary rows are; false discovery rate {params.false_alarm:g})",
                dataset="test", rows=tuple(int(r) for r in rows),
                details={"matches": [[int(a), int(b), round(float(d), 6),
                                      round(float(r), 3) if np.isfinite(r) else None, float(f"{p:.3g}")]
                                     for a, b, d, r, p in zip(rows, train_rows, found.d1[rows], ratio[rows], pv[rows])],
                         "match_columns": ["test_row", "train_row", "distance", "second_over_first", "p_value"]},
            ))
        return Outcome(status=_status(fraction, len(rows), params.max_fraction), metrics=metrics, findings=findings)

    def _text(self, ctx: "AuditContext", params: NearParams, text_cols: list[str], is_exact: "np.ndarray") -> Outcome:
        import numpy as np

        from auditor.checks.leakage_neighbours import text_near_duplicates

        if params.num_perm % params.bands:
            raise ValueError(f"num_perm ({params.num_perm}) must be a multiple of bands ({params.bands})")

        def joined(frame):
            parts = [frame[c].astype("string").fillna("") for c in text_cols]
            out = parts[0]
            for p in parts[1:]:
                out = out + "\n" + p
            return out.tolist()

        ctx.progress.step("MinHash signatures and LSH candidates")
        best_j, best_t, stats = text_near_duplicates(
            joined(ctx.train.frame), joined(ctx.test.frame), params.text_jaccard, params.shingle, params.num_perm,
            params.bands, ctx.check_seed(),
        )
        near = (best_j >= params.text_jaccard) & ~is_exact & (best_t >= 0)
        rows = np.flatnonzero(near)
        n = ctx.test.n_rows
        fraction = len(rows) / n
        metrics = {"mode": "text", "text_columns": text_cols, "jaccard_threshold": params.text_jaccard,
                   "max_fraction": params.max_fraction, "test_rows": n, "train_rows": ctx.train.n_rows,
                   "exact_copies_excluded": int(is_exact.sum()), **stats,
                   "near_duplicate_rows": int(len(rows)), "near_duplicate_fraction": round(fraction, 6)}
        findings = []
        if len(rows):
            findings.append(Finding(
                f"test: {len(rows)} of {n} text rows ({fraction:.2%}) have a training row with word-shingle "
                f"Jaccard similarity >= {params.text_jaccard:g} without being exact copies",
                dataset="test", rows=tuple(int(r) for r in rows),
                details=_matches_detail(rows, best_t[rows], best_j[rows], "jaccard"),
            ))
        return Outcome(status=_status(fraction, len(rows), params.max_fraction), metrics=metrics, findings=findings)


# ----------------------------------------------------------------------------- target leakage


class TargetParams(Params):
    threshold: float = Field(
        0.8, gt=0, le=1,
        description="a feature leaks when its cross-validated single-feature predictive power score reaches this "
                    "(classification: balanced accuracy rescaled so chance is 0 and perfect is 1; regression: R^2)",
    )
    max_power_change: float = Field(0.3, gt=0, le=1, description="flag features whose score differs between train and test by this much")
    min_test_rows: int = Field(50, ge=10, description="fewer labelled test rows: the test-side scores are not computed")
    cv_folds: int = Field(5, ge=2, le=20)
    max_rows: int = Field(20_000, ge=100, description="rows sampled per dataset (seeded)")
    max_features: int = Field(500, ge=1, description="score at most this many feature columns (in file order)")
    max_classes: int = Field(50, ge=2, description="a numeric label with more distinct values is treated as a regression target")
    power_change_fails: bool = Field(False, description="a sharp train/test change fails the check (default: warns)")


def _single_feature_scores(features, y, classification: bool, folds: int, seed: int, text_cols: set[str]) -> dict:
    """Cross-validated predictive power of each feature alone: {column: score in [0, 1] or None}."""
    import warnings

    import numpy as np
    import pandas as pd
    from sklearn.metrics import balanced_accuracy_score, r2_score
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
    from threadpoolctl import threadpool_limits

    n = len(y)
    if classification:
        counts = np.bincount(y)
        k = max(2, min(folds, int(counts[counts > 0].min()) if (counts > 0).sum() else 2))
        n_classes = int((counts > 0).sum())
        splits = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n), y)) \
            if counts[counts > 0].min() >= 2 else list(KFold(n_splits=min(folds, n), shuffle=True, random_state=seed).split(np.zeros(n)))
    else:
        splits = list(KFold(n_splits=min(folds, n), shuffle=True, random_state=seed).split(np.zeros(n)))
        n_classes = 0
    leaf = max(5, n // 1000)
    scores: dict = {}
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")
        for col in features.columns:
            if col in text_cols:
                continue
            c = lh.canonical(features[col])
            numeric = not np.any(c.kind == 2)
            pred = np.zeros(n) if not classification else np.zeros(n, dtype=np.int64)
            if numeric:
                x = np.where(c.kind == 1, c.num, np.where(c.kind == 3, c.ints.astype(np.float64), np.nan)).reshape(-1, 1)
                if np.all(np.isnan(x)) or np.nanmin(x) == np.nanmax(x):
                    scores[col] = 0.0
                    continue
                for tr, ho in splits:
                    model = (DecisionTreeClassifier if classification else DecisionTreeRegressor)(
                        max_depth=8, min_samples_leaf=leaf, random_state=seed)
                    model.fit(x[tr], y[tr])
                    pred[ho] = model.predict(x[ho])
            else:
                codes = pd.Series(c.hashes())
                for tr, ho in splits:
                    frame = pd.DataFrame({"k": codes.iloc[tr].to_numpy(), "y": y[tr]})
                    if classification:
                        table = frame.groupby("k")["y"].agg(lambda s: np.bincount(s).argmax())
                        fallback = np.bincount(y[tr]).argmax()
                    else:
                        table = frame.groupby("k")["y"].mean()
                        fallback = float(np.mean(y[tr]))
                    pred[ho] = codes.iloc[ho].map(table).fillna(fallback).to_numpy()
            if classification:
                chance = 1.0 / max(n_classes, 1)
                bal = balanced_accuracy_score(y, pred)
                scores[col] = float(max(0.0, (bal - chance) / (1 - chance))) if n_classes > 1 else 0.0
            else:
                scores[col] = float(max(0.0, r2_score(y, pred)))
    return scores


class TargetLeakage(Check):
    id = "leakage.target"
    title = "Features that alone predict the label (target leakage)"
    family = "leakage"
    description = (
        "Cross-validated predictive power of each feature on its own (a shallow tree on a number, a category -> "
        "label lookup on a category); features that predict the label almost perfectly are named, and so are "
        "features whose predictive power differs sharply between train and test."
    )
    requires = ("train", "label")
    default_severity = "high"
    controls = LEAKAGE_CONTROLS
    Params = TargetParams

    def run(self, ctx: "AuditContext", params: TargetParams) -> Outcome:
        import numpy as np
        import pandas as pd

        from auditor.checks._tabular import label_series

        rng = ctx.rng()
        labels = label_series(ctx.train.labels())
        known_tr = labels.notna().to_numpy()
        raw = ctx.train.labels()
        numeric_label = np.issubdtype(np.asarray(raw).dtype, np.number) and not np.issubdtype(np.asarray(raw).dtype, np.bool_)
        n_distinct = labels[known_tr].nunique()
        classification = not (numeric_label and n_distinct > params.max_classes)
        if n_distinct < 2:
            return Outcome.skipped("the label has fewer than two distinct values")
        classes = np.unique(labels[known_tr].to_numpy(dtype=object)) if classification else None

        def prepare(ds):
            lab = label_series(ds.labels())
            rows = np.flatnonzero(lab.notna().to_numpy())
            if len(rows) > params.max_rows:  # sample first: the mapping below is per row
                rows = np.sort(rng.choice(rows, params.max_rows, replace=False))
            if classification:
                codes = pd.Index(classes).get_indexer(lab.to_numpy(dtype=object)[rows])
                ok = codes >= 0  # test classes unseen in training are left out
                rows, y = rows[ok], codes[ok].astype(np.int64)
            else:
                y = np.asarray(ds.labels(), dtype=np.float64)[rows]
                ok = np.isfinite(y)
                rows, y = rows[ok], y[ok]
            feats = ds.features()
            cols = list(feats.columns[:params.max_features])
            return feats.iloc[rows][cols].reset_index(drop=True), y

        text_cols = set(ctx.train.text_columns())
        ctx.progress.step("single-feature cross-validation on train")
        X_tr, y_tr = prepare(ctx.train)
        train_scores = _single_feature_scores(X_tr, y_tr, classification, params.cv_folds, ctx.check_seed(), text_cols)
        test_scores: dict = {}
        test = ctx.test
        if test is not None and test.has_label:
            X_te, y_te = prepare(test)
            if len(y_te) >= params.min_test_rows and len(np.unique(y_te)) >= 2:
                ctx.progress.step("single-feature cross-validation on test")
                common = [c for c in X_tr.columns if c in X_te.columns]
                test_scores = _single_feature_scores(X_te[common], y_te, classification, params.cv_folds,
                                                     ctx.check_seed(), text_cols)
        leaky = sorted((c for c, s in train_scores.items() if s >= params.threshold), key=lambda c: -train_scores[c])
        changed = sorted(
            (c for c, s in test_scores.items() if c in train_scores and abs(train_scores[c] - s) >= params.max_power_change),
            key=lambda c: -abs(train_scores[c] - test_scores[c]))
        per_feature = {c: {"train": round(s, 4), **({"test": round(test_scores[c], 4)} if c in test_scores else {})}
                       for c, s in train_scores.items()}
        metrics = {
            "threshold": params.threshold, "max_power_change": params.max_power_change,
            "task": "classification" if classification else "regression",
            "score": "balanced accuracy rescaled (0 chance, 1 perfect)" if classification else "R^2 (clipped at 0)",
            "features_scored": len(train_scores), "rows_used": {"train": len(y_tr), **({"test": len(X_te)} if test_scores else {})},
            "leaky_features": leaky, "power_changed_features": changed, "per_feature": per_feature,
        }
        findings = [Finding(
            f"feature {c!r} alone predicts the label: score {train_scores[c]:.3f} on train"
            + (f", {test_scores[c]:.3f} on test" if c in test_scores else "") + f" (threshold {params.threshold:g})",
            details={"feature": c, **per_feature[c]}) for c in leaky]
        findings += [Finding(
            f"feature {c!r}: predictive power {train_scores[c]:.3f} on train vs {test_scores[c]:.3f} on test "
            f"(change limit {params.max_power_change:g})", details={"feature": c, **per_feature[c]}) for c in changed]
        status = "fail" if leaky or (changed and params.power_change_fails) else "warn" if changed else "pass"
        return Outcome(status=status, metrics=metrics, findings=findings)


# ----------------------------------------------------------------------------- group leakage


class GroupParams(Params):
    column: str | list[str] | None = Field(None, description="entity id column(s) (e.g. patient_id); the check is skipped without it")
    max_fraction: float = Field(0.0, ge=0, le=1, description="fail when more than this fraction of test rows share an id with training")


def _columns_of(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _require_columns(ds: "Dataset", cols: list[str], what: str) -> None:
    if ds.is_array:
        raise ValueError(f"{ds.name} is an array (.npz): it has no {what} column")
    columns = list(ds.columns) if ds.is_spark else list(ds.frame.columns)
    missing = [c for c in cols if c not in columns]
    if missing:
        raise ValueError(f"{what} column(s) {missing} not in the {ds.name} set (columns: {', '.join(map(str, columns[:12]))})")


def group_outcome(cols: list[str], params: GroupParams, n: int, test_rows, train_rows, shared: int,
                  train_groups: int, test_groups: int, without_id: int) -> Outcome:
    """leakage.group's verdict, metrics and finding from what either engine found (rows ascending)."""
    fraction = len(test_rows) / n
    metrics = {
        "columns": cols, "max_fraction": params.max_fraction,
        "train_groups": int(train_groups), "test_groups": int(test_groups),
        "shared_groups": int(shared), "test_rows_in_shared_groups": int(len(test_rows)),
        "leaked_fraction": round(fraction, 6),
        "test_rows_without_id": int(without_id),
    }
    findings = []
    if len(test_rows):
        findings.append(Finding(
            f"test: {len(test_rows)} of {n} rows ({fraction:.2%}) belong to {shared} entities "
            f"({', '.join(cols)}) that also occur in training",
            dataset="test", rows=tuple(int(r) for r in test_rows),
            details={"matches": [[int(a), int(b)] for a, b in zip(test_rows, train_rows)],
                     "match_columns": ["test_row", "train_row"]},
        ))
    return Outcome(status=_status(fraction, len(test_rows), params.max_fraction), metrics=metrics, findings=findings)


NO_ID_COLUMN = "no id column named: set checks.leakage.group.params.column in the policy"
NO_TIME_COLUMN = "no time column named: set checks.leakage.temporal.params.column in the policy"


class GroupLeakage(Check):
    id = "leakage.group"
    title = "The same entity in train and test (group leakage)"
    family = "leakage"
    description = (
        "Test rows whose entity id (the policy's id column, e.g. patient or user) also occurs in the training set; "
        "every such test row listed with a training row of the same entity."
    )
    requires = ("train", "test")
    default_severity = "high"
    controls = LEAKAGE_CONTROLS
    Params = GroupParams
    spark_native = True

    def run_spark(self, ctx: "AuditContext", params: GroupParams) -> Outcome:
        from auditor.checks.leakage_group_spark import group_leakage

        return group_leakage(ctx, params)

    def run(self, ctx: "AuditContext", params: GroupParams) -> Outcome:
        import numpy as np

        if not params.column:
            return Outcome.skipped(NO_ID_COLUMN)
        cols = _columns_of(params.column)
        for ds in (ctx.train, ctx.test):
            _require_columns(ds, cols, "id")
        tr, te = ctx.train.frame, ctx.test.frame
        present_tr = np.ones(len(tr), bool)
        present_te = np.ones(len(te), bool)
        for c in cols:
            present_tr &= lh.canonical(tr[c]).kind != 0
            present_te &= lh.canonical(te[c]).kind != 0
        h_tr = lh.frame_row_hashes(tr, cols)
        h_te = lh.frame_row_hashes(te, cols)
        tr_ids = np.flatnonzero(present_tr)
        m = lh.match_hashes(h_tr[tr_ids], h_te)
        keep = present_te[m.test_rows]
        test_rows, train_rows = m.test_rows[keep], tr_ids[m.train_rows[keep]]
        return group_outcome(cols, params, len(te), test_rows, train_rows, shared=len(np.unique(h_te[test_rows])),
                             train_groups=len(np.unique(h_tr[present_tr])), test_groups=len(np.unique(h_te[present_te])),
                             without_id=int((~present_te).sum()))


# ----------------------------------------------------------------------------- temporal leakage


class TemporalParams(Params):
    column: str | None = Field(None, description="time column (datetime, or numbers such as years); skipped without it")
    min_gap: str | float = Field(
        0, description="test rows must be later than the last training time by more than this (a pandas Timedelta such as '7D', or a number for numeric times)"
    )
    max_fraction: float = Field(0.0, ge=0, le=1, description="fail when more than this fraction of test rows are not later")


def _times(series) -> "tuple[np.ndarray, str]":
    """(float64 times with NaN for missing/unparsable, kind 'datetime' (ns since epoch, UTC) or 'numeric')."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(series):
        s = series.dt.tz_convert("UTC").dt.tz_localize(None) if getattr(series.dt, "tz", None) is not None else series
        return _ns(s), "datetime"
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan), "numeric"
    text = series.astype("string").str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    if numeric.notna().sum() == text.notna().sum() and text.notna().any():
        return numeric.to_numpy(dtype=np.float64, na_value=np.nan), "numeric"
    return parse_times(text), "datetime"


def parse_times(text) -> "np.ndarray":
    """Stripped strings parsed as datetimes (each on its own; naive ones are UTC): float64 ns, NaN if unparsable."""
    import pandas as pd

    return _ns(pd.to_datetime(text, errors="coerce", utc=True, format="mixed").dt.tz_localize(None))


def _ns(naive) -> "np.ndarray":
    """Naive datetimes as float64 nanoseconds since the epoch (NaN for NaT) from their own unit: pandas 3 keeps
    s, ms or us, and casting those to datetime64[ns] wraps dates outside 1677-2262 around (9999-12-31 < 2000)."""
    import numpy as np

    unit = np.datetime_data(naive.dtype)[0]
    v = naive.to_numpy().view(np.int64).astype(np.float64) * float(np.timedelta64(1, unit) // np.timedelta64(1, "ns"))
    v[naive.isna().to_numpy()] = np.nan
    return v


def time_gap(min_gap: str | float, kind: str) -> float:
    """The policy's min_gap in the times' unit (ns for datetimes)."""
    import pandas as pd

    if kind == "datetime":
        gap = float(pd.Timedelta(min_gap if isinstance(min_gap, str) else f"{min_gap}s").value)
    else:
        gap = float(min_gap) if not isinstance(min_gap, str) else float(pd.to_numeric(min_gap))
    if gap < 0:
        raise ValueError("min_gap must not be negative")
    return gap


def _fmt_time(value: float, kind: str) -> str | float:
    import pandas as pd

    if value != value:
        return None
    if kind != "datetime":
        return float(value)
    if abs(value) < 2**63:
        return pd.Timestamp(int(value)).isoformat()
    return pd.Timestamp(int(value // 1000), unit="us").isoformat()  # beyond nanosecond timestamps


def temporal_outcome(col: str, kind: str, params: TemporalParams, gap: float, n: int, flagged, match,
                     train_period: tuple[float, float], test_period: tuple[float, float] | None,
                     train_missing: int, missing) -> Outcome:
    """leakage.temporal's verdict, metrics and findings from what either engine found: the test rows not later
    than the training period (ascending) with a training row at or after each, and the test rows without a time."""
    fraction = len(flagged) / n
    metrics = {
        "column": col, "kind": kind, "min_gap": params.min_gap, "max_fraction": params.max_fraction,
        "train_period": [_fmt_time(train_period[0], kind), _fmt_time(train_period[1], kind)],
        "test_period": [_fmt_time(test_period[0], kind), _fmt_time(test_period[1], kind)] if test_period else None,
        "test_rows_not_later": int(len(flagged)), "leaked_fraction": round(fraction, 6),
        "train_rows_without_time": int(train_missing), "test_rows_without_time": int(len(missing)),
    }
    findings = []
    if len(flagged):
        findings.append(Finding(
            f"test: {len(flagged)} of {n} rows ({fraction:.2%}) are not later than the training period "
            f"(last training time {metrics['train_period'][1]}" + (f", gap {params.min_gap}" if gap else "") + ")",
            dataset="test", rows=tuple(int(r) for r in flagged),
            details={"matches": [[int(a), int(b)] for a, b in zip(flagged, match)],
                     "match_columns": ["test_row", "train_row_at_or_after"]},
        ))
    if len(missing):
        findings.append(Finding(f"test: {len(missing)} rows have no usable time in {col!r}", dataset="test",
                                rows=tuple(int(r) for r in missing)))
    status = _status(fraction, len(flagged) + len(missing), params.max_fraction)
    return Outcome(status=status, metrics=metrics, findings=findings)


class TemporalLeakage(Check):
    id = "leakage.temporal"
    title = "Test rows not later than the training period (temporal leakage)"
    family = "leakage"
    description = (
        "With the policy's time column: test rows whose time is not later than the last training time (plus an "
        "optional gap); each listed with a training row at or after its time."
    )
    requires = ("train", "test")
    default_severity = "high"
    controls = LEAKAGE_CONTROLS
    Params = TemporalParams
    spark_native = True

    def run_spark(self, ctx: "AuditContext", params: TemporalParams) -> Outcome:
        from auditor.checks.leakage_temporal_spark import temporal_leakage

        return temporal_leakage(ctx, params)

    def run(self, ctx: "AuditContext", params: TemporalParams) -> Outcome:
        import numpy as np

        if not params.column:
            return Outcome.skipped(NO_TIME_COLUMN)
        col = params.column
        for ds in (ctx.train, ctx.test):
            _require_columns(ds, [col], "time")
        t_tr, kind_tr = _times(ctx.train.frame[col])
        t_te, kind_te = _times(ctx.test.frame[col])
        if kind_tr != kind_te:
            raise ValueError(f"time column {col!r} is {kind_tr} in training but {kind_te} in test")
        ok_tr = np.isfinite(t_tr)
        if not ok_tr.any():
            raise ValueError(f"time column {col!r} has no usable values in the training set")
        gap = time_gap(params.min_gap, kind_tr)
        train_end = float(np.max(t_tr[ok_tr]))
        ok_te = np.isfinite(t_te)
        flagged = np.flatnonzero(ok_te & (t_te <= train_end + gap))
        # a training row at or after each flagged test time (else the last training row)
        tr_idx = np.flatnonzero(ok_tr)
        order = tr_idx[np.argsort(t_tr[tr_idx], kind="stable")]
        pos = np.searchsorted(t_tr[order], t_te[flagged], side="left")
        match = order[np.minimum(pos, len(order) - 1)]
        test_period = (float(np.min(t_te[ok_te])), float(np.max(t_te[ok_te]))) if ok_te.any() else None
        return temporal_outcome(col, kind_tr, params, gap, len(t_te), flagged, match,
                                (float(np.min(t_tr[ok_tr])), train_end), test_period,
                                int((~ok_tr).sum()), np.flatnonzero(~ok_te))
