"""The linear regression model's pair products (interactions.py): they find a real interaction, cost
little on an additive target (the lasso's own CV leaves them out), are learnt on the training rows only,
and survive the stored form."""

import numpy as np
import pandas as pd

from trainmedic.tabular.interactions import PairProducts
from trainmedic.tabular.models import LinearModel, subset_frame
from trainmedic.tabular.preprocess import prepare_features


def _table(n: int, seed: int, interaction: bool) -> pd.DataFrame:
    """Three useful columns, five noise columns and a category; the target has x1 * x2 or not."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(1, 9)})
    df["cat"] = rng.choice(["a", "b", "c"], size=n)
    y = df.x1 + 0.8 * df.x2 + 0.5 * df.x3 + 0.4 * (df.cat == "a")
    if interaction:
        y = y + 0.8 * df.x1 * df.x2
    df["y"] = y + rng.normal(scale=0.3, size=n)
    return df


def _val_rmse(df: pd.DataFrame, interactions: int) -> tuple[float, LinearModel]:
    ff = prepare_features(df, ["y"])
    y = df["y"].to_numpy()
    tr, va = np.arange(0, 400), np.arange(400, len(df))
    model = LinearModel("regression", seed=0, params={"interactions": interactions,
                                                           "target_means": False})
    model.fit(subset_frame(ff, tr), y[tr], (tr[:340], tr[340:]))
    pred = model.predict(subset_frame(ff, va))
    return float(np.sqrt(np.mean((pred - y[va]) ** 2))), model


def test_products_capture_an_interaction_the_additive_lasso_misses():
    for seed in (0, 1, 2):
        df = _table(600, seed, interaction=True)
        without, _ = _val_rmse(df, 0)
        with_pairs, model = _val_rmse(df, 10)
        # noise sd is 0.3: with the product the model is near it, without it the x1*x2 term (sd 0.8) is left
        assert with_pairs < 0.4 < 0.7 < without, (seed, with_pairs, without)
        pairs = set(zip(model.pairs.left.tolist(), model.pairs.right.tolist(), strict=True))
        assert (0, 1) in pairs or (1, 0) in pairs  # x1 and x2 are the first two prepared columns


def test_products_cost_little_on_an_additive_target():
    for seed in (0, 1, 2):
        df = _table(600, seed, interaction=False)
        without, _ = _val_rmse(df, 0)
        with_pairs, _ = _val_rmse(df, 10)
        assert with_pairs <= without * 1.03, (seed, with_pairs, without)


def test_products_are_learnt_on_the_training_rows_and_stored_as_numbers():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(200, 6))
    y = A[:, 0] - 2 * A[:, 3] + rng.normal(scale=0.1, size=200)
    pp = PairProducts(top=3).fit(A[:150], y[:150])
    assert len(pp.left) == 3 and {0, 3} <= set(pp.left.tolist()) | set(pp.right.tolist())
    out = pp.transform(A[:150])
    assert out.shape == (150, 9)
    assert np.allclose(out[:, 6:].mean(axis=0), 0, atol=1e-9) and np.allclose(out[:, 6:].std(axis=0), 1)
    again = PairProducts.from_dict(pp.to_dict())
    assert np.array_equal(again.transform(A[150:]), pp.transform(A[150:]))
    # too few columns, or a constant target: nothing is added
    assert PairProducts(top=10).fit(A[:, :1], y).transform(A[:, :1]).shape == (200, 1)
    assert PairProducts(top=10).fit(A, np.ones(200)).transform(A).shape == (200, 6)

