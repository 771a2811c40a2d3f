"""Minimal self-contained HTML report (replaced by the full report of issue 4)."""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment

from trainmedic.findings import atomic_write_text

_TEMPLATE = """<!doctype html><html><head><meta charset="utf-8"><title>trainmedic report</title></head>
<body><h1>trainmedic report</h1>
{% if not findings %}<p>No findings.</p>{% endif %}
<ul>{% for f in findings %}<li><b>{{ f.code }} {{ f.name }}</b> ({{ f.severity }}) step {{ f.step }}:
{{ f.message }}{% if f.action %} &rarr; {{ f.action }}{% endif %}</li>{% endfor %}</ul>
</body></html>"""


def write_report(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    doc = json.loads((out / "findings.json").read_text(encoding="utf-8"))
    env = Environment(autoescape=True)
    html = env.from_string(_TEMPLATE).render(findings=doc.get("findings", []))
    atomic_write_text(out / "report.html", html)
    return out / "report.html"
