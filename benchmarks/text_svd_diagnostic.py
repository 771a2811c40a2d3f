"""Why ``fit --text`` does not help on ``tabular_columns.listing_text``: the same 5 folds as fit's, a
logistic regression (LogisticRegressionCV) on the numeric columns plus (a) nothing, (b) fit's own
``TextSVD(16)``, (c) ``TextSVD(64)``, (d) the sparse TF-IDF, (e) the true tone (positive minus negative words).

    PYTHONPATH=src python -W ignore benchmarks/text_svd_diagnostic.py    # about a minute
"""

import sys
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from trainmedic.tabular.preprocess import TextSVD

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tabular_columns as T  # noqa: E402

ARMS = ("numeric only", "numeric + SVD16", "numeric + SVD64", "numeric + TF-IDF (sparse)", "numeric + true tone")


def features(df, tr, arm, tone):
    kind = OneHotEncoder(sparse_output=False).fit(df[["kind"]].iloc[tr])
    inter = (df.x3 * (df.kind == "house")).to_numpy()[:, None]
    base = np.hstack([df[["x1", "x2", "x3", "x4"]].to_numpy(), kind.transform(df[["kind"]]), inter])
    B = StandardScaler().fit(base[tr]).transform(base)
    if arm in ("numeric + SVD16", "numeric + SVD64"):
        Z = TextSVD(16 if "16" in arm else 64).fit(df.description.iloc[tr]).transform(df.description)
        return np.hstack([B, StandardScaler().fit(Z[tr]).transform(Z)])
    if arm == "numeric + TF-IDF (sparse)":
        v = TfidfVectorizer(min_df=2, ngram_range=(1, 2), sublinear_tf=True).fit(df.description.iloc[tr])
        return sparse.hstack([sparse.csr_matrix(B), v.transform(df.description)]).tocsr()
    if arm == "numeric + true tone":
        return np.hstack([B, tone[:, None]])
    return B


def main() -> None:
    for seed in (0, 1, 2):
        df = T.listing_text(seed)
        y = df.y.to_numpy()
        tone = np.array([sum(w in T.POSITIVE for w in d.split()) - sum(w in T.NEGATIVE for w in d.split())
                         for d in df.description])
        res = {}
        for arm in ARMS:
            oof = np.zeros(len(y))
            for tr, va in StratifiedKFold(5, shuffle=True, random_state=seed).split(df, y):
                X = features(df, tr, arm, tone)
                oof[va] = LogisticRegressionCV(Cs=10, cv=3, max_iter=2000).fit(X[tr], y[tr]).predict_proba(X[va])[:, 1]
            res[arm] = round(log_loss(y, oof), 4)
        print(seed, res)


if __name__ == "__main__":
    main()
