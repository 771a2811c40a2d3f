"""A hover readout on the report's curves: the step under the mouse, the values there, the events nearby.

The plots stay PNG images; each curve plot carries, in a ``data-hover`` attribute, where its axes sit in
the image (as fractions) and a decimated copy of its curves and events. One small inline script of our
own (no library, no network) turns mouse positions into steps and shows a tooltip and a guide line. The
page's Content-Security-Policy allows exactly that script, by its SHA-256, and nothing else. Every label
is inserted as text (``textContent``), never as HTML, so user strings stay inert here too. Without
JavaScript the page is the same report, without the readout.
"""

from __future__ import annotations

import base64
import hashlib
import math
from typing import Any

MAX_POINTS = 1200  # per curve: enough for a readout at any zoom of the page, small enough to embed

HOVER_JS = """
(function () {
  "use strict";
  var tip = document.createElement("div");
  tip.id = "hover-tip";
  tip.className = "hover-tip";
  document.body.appendChild(tip);
  function fmt(v) {
    if (v === null) return "not finite";
    if (typeof v !== "number" || !isFinite(v)) return String(v);
    var a = Math.abs(v);
    return (a !== 0 && (a >= 1e5 || a < 1e-3)) ? v.toExponential(3) : String(+v.toPrecision(4));
  }
  function nearest(points, x) {
    var lo = 0, hi = points.length - 1;
    if (hi < 0) return null;
    while (hi - lo > 1) { var mid = (lo + hi) >> 1; if (points[mid][0] < x) lo = mid; else hi = mid; }
    return Math.abs(points[lo][0] - x) <= Math.abs(points[hi][0] - x) ? points[lo] : points[hi];
  }
  function line(text, strong) {
    var d = document.createElement(strong ? "b" : "div");
    d.textContent = text;
    tip.appendChild(d);
  }
  Array.prototype.forEach.call(document.querySelectorAll("img[data-hover]"), function (img) {
    var panels = JSON.parse(img.getAttribute("data-hover"));
    var guide = document.createElement("div");
    guide.className = "hover-guide";
    img.parentNode.appendChild(guide);
    function hide() { tip.style.display = "none"; guide.style.display = "none"; }
    img.addEventListener("mouseleave", hide);
    img.addEventListener("mousemove", function (e) {
      var r = img.getBoundingClientRect();
      var fx = (e.clientX - r.left) / r.width, fy = (e.clientY - r.top) / r.height;
      var p = panels.filter(function (q) {
        return fx >= q.box[0] && fx <= q.box[2] && fy >= q.box[1] && fy <= q.box[3];
      })[0];
      if (!p) { hide(); return; }
      var span = p.x[1] - p.x[0];
      var step = p.x[0] + (fx - p.box[0]) / (p.box[2] - p.box[0]) * span;
      var at = Math.round(step), values = [];
      p.curves.forEach(function (c) {
        var pt = nearest(c.points, at);
        if (pt && Math.abs(pt[0] - at) <= span / 20) {
          values.push(c.name + ": " + fmt(pt[1]) + (pt[0] !== at ? " (step " + pt[0] + ")" : ""));
        }
      });
      tip.textContent = "";
      line("step " + at, true);
      values.forEach(function (v) { line(v, false); });
      p.events.filter(function (ev) { return Math.abs(ev[0] - at) <= span / 150; })
        .slice(0, 6).forEach(function (ev) { line("step " + ev[0] + ": " + ev[1], false); });
      tip.style.left = (e.pageX + 14) + "px";
      tip.style.top = (e.pageY + 14) + "px";
      tip.style.display = "block";
      var gx = p.box[0] + (at - p.x[0]) / span * (p.box[2] - p.box[0]);
      guide.style.left = (img.offsetLeft + gx * img.offsetWidth) + "px";
      guide.style.top = (img.offsetTop + p.box[1] * img.offsetHeight) + "px";
      guide.style.height = ((p.box[3] - p.box[1]) * img.offsetHeight) + "px";
      guide.style.display = "block";
    });
  });
})();
"""

HOVER_CSS = """
figure { position: relative; }
.hover-tip { position: absolute; display: none; z-index: 10; pointer-events: none; background: #fff;
             border: 1px solid #999; border-radius: 4px; padding: .3em .55em; font-size: .8em; max-width: 28em;
             box-shadow: 0 2px 6px rgba(0,0,0,.18); overflow-wrap: anywhere; }
.hover-guide { position: absolute; display: none; width: 0; border-left: 1px dashed #555; pointer-events: none; }
"""


def csp_source() -> str:
    """The CSP source that allows :data:`HOVER_JS` and no other script."""
    digest = hashlib.sha256(HOVER_JS.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def _short_number(v: float) -> float | int:
    x = float(f"{v:.6g}")
    return int(x) if x.is_integer() and abs(x) < 2**53 else x


def panel(ax, curves: list[tuple[str, list[tuple[float, float]]]], events: list[tuple[float, str]]) -> dict[str, Any]:
    """The readout of one axes: its box in the image (fractions, from the top left), its step range, its
    curves (decimated to :data:`MAX_POINTS`) and its events (step, text)."""
    pos = ax.get_position()
    xmin, xmax = ax.get_xlim()
    out_curves = []
    for name, points in curves:  # a non-finite value stays in, as null: the readout says "not finite"
        pts = sorted(((x, y) for x, y in points if math.isfinite(x)), key=lambda p: p[0])
        if not pts:
            continue
        every = max(1, math.ceil(len(pts) / MAX_POINTS))
        out_curves.append({"name": name, "points": [[_short_number(x), _short_number(y) if math.isfinite(y) else None]
                                                     for x, y in pts[::every]]})
    evs = sorted(((float(s), str(t)[:160]) for s, t in events if math.isfinite(s)), key=lambda e: e[0])[:2000]
    return {"box": [round(pos.x0, 5), round(1 - pos.y1, 5), round(pos.x1, 5), round(1 - pos.y0, 5)],
            "x": [_short_number(xmin), _short_number(xmax)], "curves": out_curves,
            "events": [[int(s) if float(s).is_integer() else s, t] for s, t in evs]}
