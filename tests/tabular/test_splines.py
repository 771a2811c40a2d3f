"""The linear regression model's cubic splines (splines.py): the same basis as scikit-learn's
SplineTransformer, learnt on the training rows only, stored as plain numbers; they fit a curve the straight
line misses, cost little on a straight-line target, and stay off for counts and for very large data."""

import json

import numpy as np
import pandas as pd
from sklearn.preprocessing import SplineTransformer

from trainmedic.tabular.models import LinearModel, subset_frame
from trainmedic.tabular.preprocess import prepare_features
from trainmedic.tabular.splines import SplineBasis


def _matrix(n: int, seed: int) -> np.ndarray:
    """Columns of the kinds a prepared table holds: normal, mostly zero (repeated quantile knots), skewed,
    a 3-level code (too few values for a basis) and a 7-valued count (just enough)."""
    rng = np.random.default_rng(seed)
    mostly_zero = np.where(rng.random(n) < 0.8, 0.0, rng.exponential(50.0, n))
    return np.column_stack([rng.normal(size=n), mostly_zero, rng.lognormal(size=n), rng.integers(0, 3, n),
                            rng.integers(0, 7, n)])


def test_basis_equals_scikit_learns_spline_transformer_on_training_and_new_rows():
    train = _matrix(400, 0)
    new = _matrix(200, 1) * 1.7 - 0.3  # many rows outside the training range, on both sides
    sb = SplineBasis().fit(train)
    assert sb.columns.tolist() == [0, 1, 2, 4]  # the 3-level code has no basis; 7 distinct values do
    ref = SplineTransformer(n_knots=5, degree=3, knots="quantile").fit(train[:, sb.columns])
    for M in (train, new):
        np.testing.assert_array_equal(sb._basis(M), ref.transform(M[:, sb.columns]))
    out = sb.transform(train)
    assert out.shape == (400, 5 + 4 * 7)
    np.testing.assert_array_equal(out[:, :5], train)  # the matrix itself is kept, the basis comes after it
    used = sb.scale != 1.0
    assert np.allclose(out[:, 5:].mean(axis=0), 0, atol=1e-9) and np.allclose(out[:, 5:][:, used].std(axis=0), 1)


def test_knots_come_from_the_training_rows_and_the_stored_form_round_trips_exactly():
    A = _matrix(600, 2)
    sb = SplineBasis().fit(A[:450], columns=[0, 2])
    np.testing.assert_array_equal(sb.knots[:, 3:8], np.percentile(A[:450][:, [0, 2]], [0, 25, 50, 75, 100], axis=0).T)
    again = SplineBasis.from_dict(json.loads(json.dumps(sb.to_dict())))
    np.testing.assert_array_equal(again.transform(A[450:]), sb.transform(A[450:]))
    # nothing qualifies: the matrix comes back unchanged, and its stored form loads too
    none = SplineBasis().fit(A[:, [3]])
    assert none.transform(A[:, [3]]).shape == (600, 1)
    assert SplineBasis.from_dict(json.loads(json.dumps(none.to_dict()))).transform(A[:, [3]]).shape == (600, 1)


def _table(n: int, seed: int, curved: bool) -> pd.DataFrame:
    """Two useful columns and four noise columns, uniform on [-2, 2] (so that no validation row lies beyond
    the winsorized training range); the target bends in x1 (a parabola) or is a straight line."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f"x{i}": rng.uniform(-2, 2, size=n) for i in range(1, 7)})
    y = 0.8 * df.x2 + (df.x1**2 if curved else df.x1)
    df["y"] = y + rng.normal(scale=0.3, size=n)
    return df


def _val_rmse(df: pd.DataFrame, splines: bool, task: str = "regression") -> tuple[float, LinearModel]:
    ff = prepare_features(df, ["y"])
    y = df["y"].to_numpy()
    tr, va = np.arange(0, 400), np.arange(400, len(df))
    model = LinearModel(task, seed=0, params={"splines": splines, "interactions": 0})
    model.fit(subset_frame(ff, tr), y[tr], (tr[:340], tr[340:]))
    pred = model.predict(subset_frame(ff, va))
    pred = pred.mean if task == "count" else pred
    return float(np.sqrt(np.mean((pred - y[va]) ** 2))), model


def test_splines_fit_a_curve_the_straight_line_misses():
    for seed in (0, 1, 2):
        df = _table(600, seed, curved=True)
        without, _ = _val_rmse(df, False)
        with_splines, model = _val_rmse(df, True)
        # noise sd 0.3; x1^2 has sd 1.2 and no straight-line part, so without a basis the model misses it
        assert with_splines < 0.4 < 1.0 < without, (seed, with_splines, without)
        assert model.splines is not None and model.splines.columns.tolist() == list(range(6))


def test_splines_cost_little_on_a_straight_line_target():
    for seed in (0, 1, 2):
        df = _table(600, seed, curved=False)
        without, _ = _val_rmse(df, False)
        with_splines, _ = _val_rmse(df, True)
        assert with_splines <= without * 1.03, (seed, with_splines, without)


def test_splines_are_off_above_the_row_limit_and_for_counts():
    df = _table(600, 0, curved=True)
    ff = prepare_features(df, ["y"])
    tr = np.arange(400)
    small = LinearModel("regression", seed=0, params={"interactions": 0})
    small.SPLINE_MAX_ROWS = 399  # the same rule as at 250,000 rows, on a table a test can fit
    small.fit(subset_frame(ff, tr), df["y"].to_numpy()[tr], (tr[:340], tr[340:]))
    assert small.splines is None and small.est.coef_.shape == (6,)
    counts = df.assign(y=np.random.default_rng(0).poisson(np.exp(0.3 * df.x1 ** 2)))
    _, model = _val_rmse(counts, True, task="count")
    assert model.splines is None
