// Veil dashboard charts: small SVG line and bar charts with hover and keyboard values.
// No library and nothing from outside the node. window.VeilCharts = {line, bars}.
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = ["#1f5fbf", "#d9480f", "#2b8a3e", "#862e9c", "#5c940d", "#0b7285"];
  function s(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (parent) parent.appendChild(e);
    return e;
  }
  // 0, step, 2 step, ... up to max, with step 1, 2 or 5 times a power of ten
  function ticks(max, n) {
    const raw = max / n, p = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * p).find((x) => x >= raw);
    const out = [];
    for (let v = 0; v <= max + 1e-9; v += step) out.push(v);
    return out;
  }
  function fmt(v) {
    const a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  }
  function frame(el, label, w, h) {
    el.classList.add("chart");
    const svg = s("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", tabindex: 0, "aria-label": label });
    el.appendChild(svg);
    const tip = document.createElement("div");
    tip.className = "tip"; tip.hidden = true; tip.setAttribute("aria-live", "polite");
    el.appendChild(tip);
    return { svg, tip };
  }
  function showTip(el, tip, svg, x, y, text) {
    const r = svg.getBoundingClientRect(), vb = svg.viewBox.baseVal;
    tip.textContent = text; tip.hidden = false;
    const px = (x / vb.width) * r.width, py = (y / vb.height) * r.height;
    tip.style.left = Math.max(0, Math.min(px + 12, r.width - tip.offsetWidth - 4)) + "px";
    tip.style.top = Math.max(py - 34, 0) + "px";
  }
  function legend(el, items) {
    const d = document.createElement("div"); d.className = "legend";
    for (const [name, color] of items) {
      const sp = document.createElement("span"), i = document.createElement("i");
      i.style.background = color; sp.append(i, name); d.appendChild(sp);
    }
    el.appendChild(d);
  }
  // opts: {series:[{name, pts:[[x,y,...]], info(p)}], xLabel, yLabel, xMax, yMax, diagonal, marks:[{x,y0,y1,label}]}
  function line(el, opts) {
    const W = 520, H = 360, L = 52, R = 14, T = 14, B = 46;
    const { svg, tip } = frame(el, opts.label || opts.yLabel, W, H);
    const all = opts.series.flatMap((x) => x.pts);
    const xMax = opts.xMax || Math.max(...all.map((p) => p[0]), 1e-9);
    const yMax = opts.yMax || Math.max(...all.map((p) => p[1]), 1e-9) * 1.05;
    const X = (v) => L + (v / xMax) * (W - L - R), Y = (v) => H - B - (v / yMax) * (H - T - B);
    const g = s("g", { class: "grid" }, svg), ax = s("g", { class: "axis" }, svg);
    for (const t of ticks(xMax, 5)) {
      s("line", { x1: X(t), x2: X(t), y1: T, y2: H - B }, g);
      s("text", { x: X(t), y: H - B + 16, "text-anchor": "middle" }, ax).textContent = fmt(t);
    }
    for (const t of ticks(yMax, 5)) {
      s("line", { x1: L, x2: W - R, y1: Y(t), y2: Y(t) }, g);
      s("text", { x: L - 6, y: Y(t) + 4, "text-anchor": "end" }, ax).textContent = fmt(t);
    }
    s("path", { d: `M${L},${T}V${H - B}H${W - R}`, fill: "none" }, ax);
    s("text", { x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle" }, ax).textContent = opts.xLabel;
    s("text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle",
      transform: `rotate(-90 14 ${(T + H - B) / 2})` }, ax).textContent = opts.yLabel;
    if (opts.diagonal) s("line", { x1: X(0), y1: Y(0), x2: X(xMax), y2: Y(Math.min(xMax, yMax)),
      stroke: "#999", "stroke-dasharray": "4 4" }, svg);
    opts.series.forEach((ser, i) => {
      ser.color = ser.color || COLORS[i % COLORS.length];
      const d = ser.pts.map((p, j) => (j ? "L" : "M") + X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join("");
      s("path", { d, fill: "none", stroke: ser.color, "stroke-width": 2 }, svg);
    });
    for (const m of opts.marks || []) {
      s("line", { x1: X(m.x), x2: X(m.x), y1: Y(m.y0), y2: Y(m.y1), stroke: "#c62828", "stroke-width": 2 }, svg);
      s("text", { x: X(m.x) + 5, y: (Y(m.y0) + Y(m.y1)) / 2, fill: "#c62828", "font-size": 12 }, svg).textContent = m.label;
    }
    const dots = opts.series.map((ser) => s("circle", { r: 4, fill: ser.color, visibility: "hidden" }, svg));
    const base = opts.series[0].pts;
    let cur = -1;
    function at(xv) {
      const lines = [];
      opts.series.forEach((ser, i) => {
        let best = ser.pts[0];
        for (const p of ser.pts) if (Math.abs(p[0] - xv) < Math.abs(best[0] - xv)) best = p;
        dots[i].setAttribute("cx", X(best[0])); dots[i].setAttribute("cy", Y(best[1]));
        dots[i].setAttribute("visibility", "visible");
        lines.push((opts.series.length > 1 ? ser.name + ": " : "") + ser.info(best));
      });
      showTip(el, tip, svg, X(xv), Y(base[Math.max(cur, 0)][1]), lines.join("\n"));
    }
    svg.addEventListener("mousemove", (ev) => {
      const r = svg.getBoundingClientRect();
      const xv = (((ev.clientX - r.left) / r.width) * W - L) / (W - L - R) * xMax;
      let k = 0;
      for (let j = 0; j < base.length; j++) if (Math.abs(base[j][0] - xv) < Math.abs(base[k][0] - xv)) k = j;
      cur = k; at(Math.max(0, Math.min(xMax, xv)));
    });
    svg.addEventListener("mouseleave", () => { tip.hidden = true; dots.forEach((d) => d.setAttribute("visibility", "hidden")); });
    svg.addEventListener("keydown", (ev) => {
      if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") return;
      ev.preventDefault();
      cur = Math.max(0, Math.min(base.length - 1, cur + (ev.key === "ArrowRight" ? 1 : -1)));
      at(base[cur][0]);
    });
    svg.addEventListener("blur", () => { tip.hidden = true; });
    legend(el, opts.series.map((x) => [x.name, x.color]));
  }
  // opts: {bars:[{label, value, info}], horizontal, xLabel, ref}
  function bars(el, opts) {
    const n = opts.bars.length, hz = !!opts.horizontal;
    const W = 520, L = hz ? 130 : 52, R = 14, T = 14, B = 46;
    const H = hz ? Math.max(160, T + B + n * 22) : 320;
    const { svg, tip } = frame(el, opts.label || opts.xLabel, W, H);
    const vMax = Math.max(...opts.bars.map((b) => b.value), opts.ref || 0, 1e-9) * 1.08;
    const ax = s("g", { class: "axis" }, svg), g = s("g", { class: "grid" }, svg);
    const V = (v) => (hz ? L + (v / vMax) * (W - L - R) : H - B - (v / vMax) * (H - T - B));
    for (const t of ticks(vMax, 4)) {
      if (hz) { s("line", { x1: V(t), x2: V(t), y1: T, y2: H - B }, g);
        s("text", { x: V(t), y: H - B + 16, "text-anchor": "middle" }, ax).textContent = fmt(t); }
      else { s("line", { x1: L, x2: W - R, y1: V(t), y2: V(t) }, g);
        s("text", { x: L - 6, y: V(t) + 4, "text-anchor": "end" }, ax).textContent = fmt(t); }
    }
    s("text", { x: hz ? (L + W - R) / 2 : 14, y: hz ? H - 8 : (T + H - B) / 2, "text-anchor": "middle",
      transform: hz ? "" : `rotate(-90 14 ${(T + H - B) / 2})` }, ax).textContent = opts.xLabel;
    const band = ((hz ? H - T - B : W - L - R) / Math.max(n, 1));
    const rects = opts.bars.map((b, i) => {
      const a = (hz ? T : L) + i * band + band * 0.15, w = band * 0.7;
      const r = hz ? s("rect", { x: L, y: a, width: Math.max(V(b.value) - L, 0), height: w, fill: opts.color || COLORS[2] }, svg)
        : s("rect", { x: a, y: V(b.value), width: w, height: Math.max(H - B - V(b.value), 0), fill: opts.color || COLORS[0] }, svg);
      s("title", {}, r).textContent = `${b.label}: ${b.info}`;
      const t = hz ? s("text", { x: L - 6, y: a + w / 2 + 4, "text-anchor": "end" }, ax)
        : s("text", { x: a + w / 2, y: H - B + 16, "text-anchor": "middle" }, ax);
      t.textContent = b.label.length > 18 ? b.label.slice(0, 17) + "…" : b.label;
      const show = () => { rects.forEach((x) => x.setAttribute("opacity", 1)); r.setAttribute("opacity", 0.7);
        showTip(el, tip, svg, hz ? V(b.value) : a + w, hz ? a + w : V(b.value), `${b.label}: ${b.info}`); };
      r.addEventListener("mouseenter", show);
      r.show = show;
      return r;
    });
    if (opts.ref) {
      const v = V(opts.ref);
      s("line", hz ? { x1: v, x2: v, y1: T, y2: H - B, stroke: "#888", "stroke-dasharray": "4 4" }
        : { x1: L, x2: W - R, y1: v, y2: v, stroke: "#888", "stroke-dasharray": "4 4" }, svg);
    }
    let cur = -1;
    svg.addEventListener("keydown", (ev) => {
      const fw = hz ? "ArrowDown" : "ArrowRight", bw = hz ? "ArrowUp" : "ArrowLeft";
      if (ev.key !== fw && ev.key !== bw) return;
      ev.preventDefault();
      cur = Math.max(0, Math.min(n - 1, cur + (ev.key === fw ? 1 : -1)));
      rects[cur].show();
    });
    svg.addEventListener("mouseleave", () => { tip.hidden = true; });
    svg.addEventListener("blur", () => { tip.hidden = true; });
  }
  window.VeilCharts = { line, bars };
})();
