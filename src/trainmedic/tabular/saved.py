"""``fit --save DIR`` and ``trainmedic predict DIR data.csv``: the fitted models, stored without pickle.

What is stored, in safe formats only (nothing in DIR can run code when loaded):

- ``model.json``: the task, classes, columns and how each was typed, the blend weights, the preprocessing
  of every model in every fold as numbers (:mod:`trainmedic.tabular.frozen`), the linear models'
  coefficients (and the regression model's pair products, spline knots and target means), the networks'
  shapes and target scaling, and the SHA-256 of every other file;
- ``lightgbm-fold{k}-bag{b}.txt``: LightGBM's own text model format;
- ``mlp-fold{k}.pt``: the networks' ``state_dict`` tensors, read back with ``torch.load(weights_only=True)``;
- ``text-{hash}.json`` and ``text-{hash}.npy``: a ``--text`` column's encoder of one fold: its TF-IDF
  vocabulary (term -> index) and idf weights, and its SVD components, read back with
  ``numpy.load(allow_pickle=False)``; ``text-{hash}-score.npy``: the coefficients of its supervised score (a
  ridge / logistic model on the TF-IDF, :mod:`trainmedic.tabular.text_score`), read back the same way; its TF-IDF settings (lowercase, token pattern, n-grams, sublinear tf,
  norm, ...) are in ``model.json``. Named by their content, so the models of one fold (whose encoders are
  fitted on the same rows, hence equal) share one copy.

``predict`` applies what ``fit`` applied to its ``--test`` file: every fold's model of each kind, averaged
over the folds, then blended with the saved weights; so ``predict DIR test.csv`` reproduces the fit's
``submission.csv`` (the tests check this, and that each fold's saved model reproduces its out-of-fold
predictions). New data must have the training columns (TM114): anything else is one clear line.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trainmedic.errors import UsageError
from trainmedic.tabular import blend as B
from trainmedic.tabular.frozen import FrozenTransform, freeze
from trainmedic.tabular.interactions import PairProducts
from trainmedic.tabular.models import GBMConfig, LightGBMModel, LinearModel, MLPConfig, MLPModel, build_mlp
from trainmedic.tabular.outdir import commit_files
from trainmedic.tabular.preprocess import FeatureFrame, looks_like_dates, numeric_text_share, prepare_features
from trainmedic.tabular.splines import SplineBasis
from trainmedic.tabular.target_encoding import TargetMeans

FORMAT = "trainmedic-fit-model"
VERSION = 1
MANIFEST = "model.json"


# ----------------------------------------------------------------------------------------------------------
# saving
# ----------------------------------------------------------------------------------------------------------
def _linear_meta(m: LinearModel) -> dict[str, Any]:
    est = m.est
    return {"coef": np.asarray(est.coef_, dtype="float64").tolist(),
            "intercept": np.asarray(est.intercept_, dtype="float64").ravel().tolist(),
            "y_mean": m.y_mean, "y_std": m.y_std, "alpha": m.alpha,
            "pairs": m.pairs.to_dict() if m.pairs is not None else None,
            "splines": m.splines.to_dict() if m.splines is not None else None,
            "target_means": m.target_means.to_dict() if m.target_means is not None else None}


def _mlp_blob(m: MLPModel) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save({f"bag{i}": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                for i, net in enumerate(m.nets)}, buf)
    return buf.getvalue()


def _mlp_meta(m: MLPModel) -> dict[str, Any]:
    c = m.cfg
    return {"hidden": list(c.hidden), "dropout": c.dropout, "count_mean": c.count_mean, "bags": len(m.nets),
            "y_mean": getattr(m, "y_mean", 0.0), "y_std": getattr(m, "y_std", 1.0),
            "K": getattr(m, "K", None), "tail_q": getattr(m, "tail_q", None), "log_alphas": list(m.log_alphas)}


def save_fit(directory: str | os.PathLike[str], p: Any, res: dict[str, Any]) -> dict[str, str]:
    """Write the fitted models of ``res`` (from ``cross_validate``) for the data prepared as ``p``."""
    d = Path(directory)
    files: dict[str, str | bytes] = {}
    models: dict[str, list[dict[str, Any]]] = {}
    for name in res["names"]:
        models[name] = []
        for k, m in enumerate(res["fitted"][name]):
            entry: dict[str, Any] = {"pre": _store_text(freeze(m.pre), files)}
            if name == "lightgbm":
                entry["alpha"] = m.alpha
                entry["boosters"] = []
                for b, booster in enumerate(m.boosters):
                    fname = f"lightgbm-fold{k}-bag{b}.txt"
                    files[fname] = booster.model_to_string()
                    entry["boosters"].append(fname)
            elif name == "mlp":
                entry.update(_mlp_meta(m))
                entry["weights"] = f"mlp-fold{k}.pt"
                files[entry["weights"]] = _mlp_blob(m)
            else:
                entry.update(_linear_meta(m))
            models[name].append(entry)
    info = p.info
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "task": info.kind,
        "classes": info.classes,
        "target": p.target,
        "id_column": p.id_col,
        "columns": [c for c in p.df.columns if c != p.target],
        "numeric": list(p.features.numeric),
        "categorical": list(p.features.categorical),
        "dates": {k: list(v) for k, v in p.features.dates.items()},
        "text": list(p.features.text),
        "dropped": dict(p.dropped_cols),
        "names": list(res["names"]),
        "weights": {k: [float(x) for x in v] for k, v in res["weights"].items()},
        "folds": len(res["folds"]),
        "models": models,
    }
    manifest["sha256"] = {name: hashlib.sha256(_bytes(data)).hexdigest() for name, data in files.items()}
    files[MANIFEST] = json.dumps(manifest, indent=1) + "\n"
    return commit_files(d, files, _previous_files(d), "--save")


def _store_text(spec: dict[str, Any], files: dict[str, str | bytes]) -> dict[str, Any]:
    """Move the text encoders' vocabulary, idf and components out of ``spec`` into files of their own."""
    for part in spec["parts"]:
        if part["kind"] != "text" or part["components"] is None:
            continue
        words = json.dumps({"vocabulary": part.pop("vocabulary"),
                            "idf": [float(v) for v in part.pop("idf")]}, ensure_ascii=False)
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(part.pop("components"), dtype="float64"), allow_pickle=False)
        coef = part.pop("score_coef", None)
        score = io.BytesIO()
        if coef is not None:
            np.save(score, np.ascontiguousarray(coef, dtype="float64"), allow_pickle=False)
        name = "text-" + hashlib.sha256(words.encode("utf-8") + buf.getvalue() + score.getvalue()).hexdigest()[:16]
        files[f"{name}.json"], files[f"{name}.npy"] = words, buf.getvalue()
        if coef is not None:
            files[f"{name}-score.npy"] = score.getvalue()
        part["encoder"] = name
    return spec


def _bytes(data: str | bytes) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def _previous_files(d: Path) -> tuple[str, ...]:
    """The files an earlier ``--save`` wrote into ``d`` (so that none of them is left stale)."""
    try:
        old = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
        return (MANIFEST, *[str(n) for n in old.get("sha256", {}) if "/" not in str(n) and str(n) != ".."])
    except (OSError, ValueError, AttributeError):
        return (MANIFEST,)


def check_save_dir(directory: str | os.PathLike[str]) -> None:
    """Before the work: ``--save`` must be new, empty, or an earlier saved model (never someone's folder)."""
    from trainmedic.tabular.outdir import check_writable_dir

    d = Path(directory)
    check_writable_dir(d, "--save")
    if d.is_dir() and any(d.iterdir()) and not (d / MANIFEST).is_file():
        raise UsageError(f"--save {d} is a folder with other files in it; give a new or empty folder "
                         f"(or one an earlier `fit --save` wrote)")


# ----------------------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------------------
class LinearCoefficients:
    """The linear models' predictions from their saved coefficients (what scikit-learn computes)."""

    def __init__(self, task: str, coef: Any, intercept: Any) -> None:
        self.task = task
        self.coef = np.asarray(coef, dtype="float64")
        self.intercept = np.asarray(intercept, dtype="float64")

    def predict(self, A: np.ndarray) -> np.ndarray:
        z = A @ self.coef.T + (self.intercept if self.intercept.size > 1 else self.intercept[0])
        return np.exp(z) if self.task == "count" else z

    def predict_proba(self, A: np.ndarray) -> np.ndarray:
        from scipy.special import expit, softmax

        z = A @ self.coef.T + self.intercept
        if z.ndim == 2 and z.shape[1] == 1:
            p1 = expit(z[:, 0])
            return np.column_stack([1.0 - p1, p1])
        return softmax(z, axis=1)


class SavedFit:
    """A fit loaded from ``fit --save DIR``: ``predict_frame(df)`` gives the submission-style predictions."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        try:
            self._load()
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any damage to the saved files is one clear line
            raise UsageError(f"{self.dir}: the saved model cannot be loaded ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0][:160] if str(exc).strip() else 'damaged'}); "
                             f"fit again with --save") from None

    def _load(self) -> None:
        if not (self.dir / MANIFEST).is_file():
            raise UsageError(f"{self.dir}: no {MANIFEST} here; give a folder written by `trainmedic fit --save`")
        m = json.loads((self.dir / MANIFEST).read_text(encoding="utf-8"))
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise UsageError(f"{self.dir}/{MANIFEST} is not a trainmedic saved model")
        if m.get("version") != VERSION:
            raise UsageError(f"{self.dir}: saved model version {m.get('version')} is not {VERSION}; fit again")
        for name, digest in m["sha256"].items():
            path = self.dir / Path(name).name
            if not path.is_file():
                raise UsageError(f"{self.dir}: {name} is missing; the saved model is incomplete, fit again with --save")
            if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                raise UsageError(f"{self.dir}: {name} is damaged (its checksum differs from the one saved); "
                                 f"fit again with --save")
        self.manifest = m
        self.task = m["task"]
        self.names = m["names"]
        self.weights = {k: np.asarray(v, dtype="float64") for k, v in m["weights"].items()}
        self._encoders: dict[str, dict[str, Any]] = {}
        self.models = {name: [self._restore(name, e) for e in m["models"][name]] for name in self.names}

    def _restore(self, name: str, e: dict[str, Any]) -> Any:
        task, k = self.task, len(self.manifest["classes"] or [])
        pre = FrozenTransform(self._load_text(e["pre"]))
        if name == "lightgbm":
            import lightgbm as lgb

            model = LightGBMModel(task, k, GBMConfig())
            model.boosters = [lgb.Booster(model_str=(self.dir / Path(f).name).read_text(encoding="utf-8"))
                              for f in e["boosters"]]
            model.alpha = float(e["alpha"])
        elif name == "mlp":
            model = self._restore_mlp(e, k)
        else:
            model = LinearModel(task, k)
            model.est = LinearCoefficients(task, e["coef"], e["intercept"])
            model.y_mean, model.y_std, model.alpha = float(e["y_mean"]), float(e["y_std"]), float(e["alpha"])
            if e.get("pairs"):  # the regression model's pair products (absent in models saved before them)
                model.pairs = PairProducts.from_dict(e["pairs"])
            if e.get("splines"):  # its splines' knots and scale (absent in models saved before them)
                model.splines = SplineBasis.from_dict(e["splines"])
            if e.get("target_means"):  # the same for the categories' target means
                model.target_means = TargetMeans.from_dict(e["target_means"])
        model.pre = pre
        return model

    def _load_text(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Put the text encoders' stored vocabulary, idf and components back into ``spec`` (read once each)."""
        for part in spec["parts"]:
            name = part.get("encoder") if part.get("kind") == "text" else None
            if name is None:
                continue
            name = Path(str(name)).name
            if name not in self._encoders:
                words = json.loads((self.dir / f"{name}.json").read_text(encoding="utf-8"))
                components = np.load(self.dir / f"{name}.npy", allow_pickle=False)
                self._encoders[name] = {"vocabulary": words["vocabulary"], "idf": words["idf"],
                                        "components": components}
                if part.get("score") is not None:  # the supervised score's coefficients
                    self._encoders[name]["score_coef"] = np.load(self.dir / f"{name}-score.npy", allow_pickle=False)
            part.update(self._encoders[name])
        return spec

    def _restore_mlp(self, e: dict[str, Any], k: int) -> MLPModel:
        import torch

        cfg = MLPConfig(hidden=tuple(e["hidden"]), dropout=float(e["dropout"]), count_mean=e["count_mean"])
        model = MLPModel(self.task, k, cfg)
        states = torch.load(self.dir / Path(e["weights"]).name, map_location="cpu", weights_only=True)
        model.nets = []
        for b in range(int(e["bags"])):
            state = states[f"bag{b}"]
            d_out, d_in = state["wide.weight"].shape
            net = build_mlp(int(d_in), int(d_out), cfg)
            net.load_state_dict(state)
            net.eval()
            model.nets.append(net)
        model.y_mean, model.y_std = float(e["y_mean"]), float(e["y_std"])
        model.K, model.tail_q = e["K"], e["tail_q"]
        model.log_alphas = list(e["log_alphas"])
        return model

    # ---- applying -----------------------------------------------------------------------------------
    def features(self, df: pd.DataFrame, source: str) -> FeatureFrame:
        """The model's features of ``df``, after the column checks of TM114 (UsageError on a mismatch)."""
        m = self.manifest
        target = m["target"]
        missing = [c for c in m["columns"] if c not in df.columns]
        extra = [c for c in df.columns if c not in m["columns"] and c != target]
        if missing or extra:
            parts = ([f"missing {_cols(missing)}"] if missing else []) + ([f"extra {_cols(extra)}"] if extra else [])
            raise UsageError(f"{source} does not have the columns the model was fitted on ({'; '.join(parts)}) "
                             f"(TM114); give a file with the training columns (the target may be absent)")
        derived = {d for parts in m["dates"].values() for d in parts}
        text = [c for c in m["numeric"] if c not in derived and not pd.api.types.is_numeric_dtype(df[c])
                and not pd.api.types.is_bool_dtype(df[c]) and not pd.api.types.is_datetime64_any_dtype(df[c])
                and df[c].notna().any() and numeric_text_share(df[c])[0] < 0.95]
        if text:
            raise UsageError(f"{source}: column(s) {_cols(text)} were numbers in training and are text here "
                             f"(TM114); fix their values or the file's separator/decimal mark")
        bad_dates = [c for c in m["dates"] if df[c].notna().any() and not looks_like_dates(df[c])]
        if bad_dates:
            raise UsageError(f"{source}: column(s) {_cols(bad_dates)} were dates in training and are not here "
                             f"(TM114); fix their values")
        ref = FeatureFrame(pd.DataFrame(), list(m["numeric"]), list(m["categorical"]), dates=m["dates"],
                           text=list(m.get("text", [])))
        return prepare_features(df, drop=[target, *m["dropped"]], reference=ref)

    def predict_model(self, name: str, X: FeatureFrame, fold: int) -> Any:
        """The prediction of one fold's model, as ``fit`` stored it out of fold (count: the mean)."""
        pred = self.models[name][fold].predict(X)
        return pred.mean if self.task == "count" else pred

    def predict_blend(self, X: FeatureFrame) -> np.ndarray:
        """Every fold's model of each kind averaged, then blended: what ``fit`` gives its ``--test`` file."""
        per: list[Any] = []
        for name in self.names:
            total = None
            for k in range(len(self.models[name])):
                tp = self.predict_model(name, X, k)
                total = tp if total is None else total + tp
            per.append(total / len(self.models[name]))
        if self.task == "count":
            return B.apply_weights(self.task, [(q, None) for q in per], self.weights)[0]
        return B.apply_weights(self.task, per, self.weights)

    def predict_frame(self, df: pd.DataFrame, source: str = "data") -> pd.DataFrame:
        X = self.features(df, source)
        pred = self.predict_blend(X)
        m = self.manifest
        id_col = m["id_column"]
        ids = df[id_col] if id_col is not None and id_col in df.columns else pd.Series(np.arange(len(df)), name="id")
        return submission_frame(self.task, m["classes"], m["target"], ids, pred)


def submission_frame(task: str, classes: list[Any], target: str, ids: pd.Series, pred: np.ndarray) -> pd.DataFrame:
    """Predictions on the target's own scale and labels, one row per input row, with its id."""
    if task == "log-regression":
        values: Any = np.exp(pred)
    elif task in ("binary", "multiclass"):
        values = [classes[i] for i in np.argmax(pred, axis=1)]
    else:
        values = pred
    return pd.DataFrame({ids.name or "id": ids.to_numpy(), target: values})


def _cols(cols: list[str], k: int = 6) -> str:
    shown = ", ".join(repr(c) for c in cols[:k])
    return shown + (f" and {len(cols) - k} more" if len(cols) > k else "")


__all__ = ["SavedFit", "check_save_dir", "save_fit", "submission_frame"]
