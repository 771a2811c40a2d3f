"""The self-contained HTML page of ``fit``: figures, model comparison, per-fold scores, worst errors, findings.

Figures are PNG images inlined as data URIs (:mod:`trainmedic.tabular.figures`); everything else is text.
Everything is escaped (Jinja2 autoescape); no scripts, no external resources (a Content-Security-Policy
allows only the inlined images and the page's own style).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jinja2 import Environment

from trainmedic.findings import Finding

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>trainmedic fit: {{ cv.target }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} tr.best td{font-weight:bold;background:#eef8ee}
.sev-error{color:#b00020;font-weight:bold} .sev-warning{color:#a65e00;font-weight:bold} .sev-info{color:#555}
code{background:#f4f4f4;padding:0 .2em} .muted{color:#666}
figure{margin:1em 0} img.plot{max-width:100%;height:auto;border:1px solid #eee} figcaption{color:#555;font-size:.9em}
</style></head><body>
<h1>trainmedic fit &mdash; <code>{{ cv.target }}</code></h1>
<p>Task <b>{{ cv.task }}</b> ({{ cv.task_reason }}); metric <b>{{ cv.metric }}</b> (lower is better{% if cv.metric == 'log_loss' %}; accuracy also shown{% endif %}).
{{ cv.rows }} rows, {{ cv.features.numeric }} numeric and {{ cv.features.categorical }} categorical features,
shuffled {{ cv.n_folds }}-fold cross-validation (seed {{ cv.seed }}), {{ cv.time_s }} s.</p>
{% for note in page_notes %}<p class="muted">Note: {{ note }}</p>
{% endfor %}
<p>Result: <b>{{ "%.4f"|format(cv.mean) }} &plusmn; {{ "%.4f"|format(cv.std) }}</b> (blend, mean over folds){% if cv.nll is defined %};
held-out NLL per row <b>{{ "%.4f"|format(cv.nll.mean) }} &plusmn; {{ "%.4f"|format(cv.nll.std) }}</b> (the blend's distribution,
weighted for NLL; its mean is weighted for {{ cv.metric }}){% endif %}.</p>

{% for fid, title, caption, data in figures %}<h2>{{ title }}</h2>
<figure id="{{ fid }}"><img class="plot" alt="{{ title }}" src="data:image/png;base64,{{ data }}">
<figcaption>{{ caption }}</figcaption></figure>
{% endfor %}
{% if worst %}<h2>Largest out-of-fold errors of the blend</h2>
<table><tr><th class="l">row id</th><th>actual</th><th>blend</th>{% for n in worst_models %}<th>{{ n }}</th>{% endfor %}<th>error</th></tr>
{% for r in worst %}<tr><td class="l">{{ r.id }}</td><td>{{ "%.4f"|format(r.actual) }}</td><td>{{ "%.4f"|format(r.blend) }}</td>
{% for v in r.models %}<td>{{ "%.4f"|format(v) }}</td>{% endfor %}<td>{{ "%+.4f"|format(r.error) }}</td></tr>
{% endfor %}</table><p class="muted">On the judged scale ({{ cv.metric }}); each model's own out-of-fold prediction beside the blend's.</p>{% endif %}

<h2>Model comparison</h2>
<table><tr><th class="l">model</th><th>mean {{ cv.metric }}</th><th>std</th>{% for k in extra %}<th>{{ k }}</th>{% endfor %}<th class="l">notes</th></tr>
{% for name, m in cv.models.items() %}
<tr{% if name == cv.best_model %} class="best"{% endif %}><td class="l">{{ name }}</td><td>{{ "%.4f"|format(m.mean) }}</td><td>{{ "%.4f"|format(m.std) }}</td>
{% for k in extra %}<td>{% if m[k] is defined %}{{ "%.4f"|format(m[k].mean) }}{% endif %}</td>{% endfor %}
<td class="l muted">{{ notes[name] }}</td></tr>
{% endfor %}
</table>
<p class="muted">Blend weights (chosen on all out-of-fold predictions; the gap to blend_crossfit is their optimism):
{% for kind, ws in cv.blend_weights.items() %}{{ kind }}: {% for n, w in ws.items() %}{{ n }} {{ "%.3f"|format(w) }}{% if not loop.last %}, {% endif %}{% endfor %}{% if not loop.last %}; {% endif %}{% endfor %}</p>

<h2>Per fold</h2>
<table><tr><th class="l">model</th>{% for i in range(cv.n_folds) %}<th>fold {{ i + 1 }}</th>{% endfor %}</tr>
{% for name, m in cv.models.items() %}<tr><td class="l">{{ name }}</td>{% for v in m.folds %}<td>{{ "%.4f"|format(v) }}</td>{% endfor %}</tr>
{% endfor %}</table>

<h2>Findings ({{ findings|length }})</h2>
{% if findings %}<table><tr><th class="l">code</th><th class="l">severity</th><th class="l">message</th><th class="l">action</th></tr>
{% for f in findings %}<tr><td class="l"><code>{{ f.code }}</code> {{ f.name }}</td><td class="l sev-{{ f.severity }}">{{ f.severity }}</td>
<td class="l">{{ f.message }}</td><td class="l">{{ f.action or "" }}</td></tr>
{% endfor %}</table>
<p class="muted"><code>trainmedic explain CODE</code> prints what each code means, why it happens and how to fix it.</p>
{% else %}<p>No findings.</p>{% endif %}
{% if searched %}<h2>Hyper-parameter search (<code>--search</code>)</h2>
<p>In each fold, each model's Optuna study chose on an inner split of that fold's training rows only (its first
trial is the default setting); the outer score is on the fold's validation rows, which the study never saw.</p>
<table><tr><th class="l">model</th><th>fold</th><th class="l">chosen</th><th>trials</th><th>inner: default</th><th>inner: chosen</th><th>outer: default</th><th>outer: chosen</th></tr>
{% for name, s in searched.items() %}{% for f in s.per_fold %}<tr><td class="l">{{ name }}</td><td>{{ loop.index }}</td>
<td class="l">{% if f.chose_default %}default{% else %}{% for k, v in f.chosen.items() %}{{ k }}={{ v }}{% if not loop.last %}, {% endif %}{% endfor %}{% endif %}</td>
<td>{{ f.trials }}</td><td>{{ num(f.default_inner_score) }}</td><td>{{ num(f.inner_score) }}</td><td>{{ num(f.default_outer_score) }}</td><td>{{ num(f.outer_score) }}</td></tr>
{% endfor %}<tr><td class="l"><b>{{ name }}</b></td><td>mean</td><td class="l">{{ s.folds_changed }} folds changed</td><td></td><td></td><td></td><td>{{ num(s.default_outer_mean) }}</td><td>{{ num(s.outer_mean) }}</td></tr>
{% endfor %}</table>{% endif %}
{% if cv.selection %}<h2>Feature selection (<code>--select</code>)</h2>
<p>Chosen in each fold on its training rows only and kept where the probes scored better without the candidates on
the fold's inner validation rows. {{ cv.selection.note }}.</p>
<table><tr><th>fold</th><th class="l">candidates (importance not above 0)</th><th>inner score: all</th><th>inner score: selected</th><th class="l">kept</th></tr>
{% for f in cv.selection.per_fold %}<tr><td>{{ loop.index }}</td><td class="l">{{ f.candidates|join(", ") or "none" }}</td>
<td>{{ num(f.inner_score_all) }}</td><td>{{ num(f.inner_score_selected) }}</td><td class="l">{{ "yes" if f.kept else "no" }}</td></tr>
{% endfor %}</table>{% endif %}
{% if cv.text_columns %}<p>Free-text columns kept (<code>--text</code>): {% for c in cv.text_columns %}<code>{{ c }}</code> {% endfor %}
(TF-IDF of words and word pairs, reduced to at most 16 SVD components, and a cross-fitted ridge / logistic score of the TF-IDF beside them; fitted inside each fold).</p>{% endif %}
{% if cv.trimmed_training_rows %}<h2>Training rows left out of the linear model and the MLP</h2>
<p>Rule: {{ cv.trimmed_training_rows.rule }}. Rows per fold: {{ cv.trimmed_training_rows.per_fold|join(", ") }}
(validation rows are never removed; LightGBM trains on all rows).</p>{% endif %}
{% if cv.dropped_columns %}<h2>Columns not used</h2><ul>
{% for c, why in cv.dropped_columns.items() %}<li><code>{{ c }}</code>: {{ why }}</li>{% endfor %}</ul>{% endif %}
</body></html>
"""

_ENV = Environment(autoescape=True)


def _notes(cv: dict[str, Any]) -> dict[str, str]:
    out = {}
    for name, m in cv["models"].items():
        if name == "mlp":
            ep = m.get("epochs")
            out[name] = f"PyTorch MLP under Medic(heal); epochs per fold {ep}" if ep else "PyTorch MLP"
        elif name == "lightgbm":
            out[name] = f"LightGBM; boosting rounds per fold {m.get('rounds')}"
        elif name == "linear":
            out[name] = f"regularized linear model; strength per fold {m.get('regularization')}"
            sample = cv.get("linear_budget_sample")  # what fit recorded --time-budget did to this member
            if sample:
                out[name] += (f"; under --time-budget fitted on a sample of each fold's training rows "
                              f"({', '.join(str(u) for u in sample['rows_used'])} of {sample['train_rows'][0]})")
        elif name == "blend":
            out[name] = "convex blend, weights chosen on all out-of-fold predictions"
        elif name == "blend_crossfit":
            out[name] = "the same blend, each fold scored with weights chosen on the other folds only"
        else:
            out[name] = ""
    return out


def _worst(cv: dict[str, Any], plots: dict[str, Any], k: int = 10) -> tuple[list[dict[str, Any]], list[str]]:
    oof = plots.get("oof") or {}
    if cv["task"] not in ("regression", "log-regression") or "blend" not in oof:
        return [], []
    y, blend = np.asarray(plots["y"]), np.asarray(oof["blend"])
    models = [n for n in oof if n != "blend"]
    ids = plots.get("ids") or list(range(len(y)))
    rows = []
    for i in np.argsort(-np.abs(y - blend))[:k]:
        rows.append({"id": ids[i], "actual": float(y[i]), "blend": float(blend[i]), "error": float(blend[i] - y[i]),
                     "models": [float(oof[n][i]) for n in models]})
    return rows, models


def render_fit_report(cv: dict[str, Any], findings: list[Finding], plots: dict[str, Any] | None = None,
                      page_notes: list[str] | None = None) -> str:
    """The fit page. Without ``plots`` (a page rebuilt from ``cv.json`` by ``trainmedic report``) the figures
    that need per-row out-of-fold predictions are left out; ``page_notes`` says so on the page."""
    from trainmedic.tabular.figures import fit_figures

    extra = [k for k, v in cv["models"].get("blend", {}).items() if isinstance(v, dict) and "mean" in v]
    worst, worst_models = _worst(cv, plots or {})
    searched = {n: m["search"] for n, m in cv["models"].items() if isinstance(m, dict) and m.get("search")}
    return _ENV.from_string(_TEMPLATE).render(cv=cv, findings=[f.to_dict() for f in findings], extra=extra,
                                              notes=_notes(cv), figures=fit_figures(cv, plots), worst=worst,
                                              worst_models=worst_models, searched=searched, num=_num,
                                              page_notes=list(page_notes or []))


OOF_LIMIT = 3_000_000  # numbers; above this oof.json is not written (a 200k-row multiclass fit would be ~100 MB)


def plots_document(plots: dict[str, Any]) -> dict[str, Any] | None:
    """The per-row data of the page's figures as JSON (``oof.json``), so that ``trainmedic report`` can draw
    the whole page again from the folder; ``None`` when it would be too large to be worth a file."""
    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if v is None:
            return None
        a = np.asarray(v)
        return a.astype(np.float32).round(6).tolist() if a.dtype.kind == "f" else a.tolist()

    oof = plots.get("oof") or {}
    size = sum(np.size(x) for v in oof.values() for x in (v if isinstance(v, tuple) else (v,)) if x is not None)
    if not oof or size > OOF_LIMIT:
        return None
    return {"version": 1, "y": plain(plots["y"]), "ids": list(plots.get("ids") or []),
            "oof": {name: plain(v) for name, v in oof.items()}}


def plots_from_document(doc: Any) -> dict[str, Any] | None:
    """:func:`plots_document` read back (the figures call ``np.asarray`` on what they use)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("oof"), dict) or "y" not in doc:
        return None
    return {"y": doc["y"], "ids": doc.get("ids") or None, "oof": doc["oof"]}


def _num(v: Any) -> str:
    return "" if v is None else f"{float(v):.4f}"
