// Trailhub console, the activity chart: stacked bars per bucket with a time axis in the viewer's
// zone, a tooltip (<title>) per bar, and a click on a bar or a drag across bars that narrows the
// timeline to that range (through `onRange(sinceIso, untilIso)`).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";

TH.BUCKET_MS = { "1m": 60e3, "5m": 300e3, "1h": 3600e3, "1d": 86400e3 };

// The smallest bucket that draws the range in at most ~240 bars.
TH.autoBucket = function (sinceMs, untilMs) {
  const span = Math.max(1, untilMs - sinceMs);
  for (const b of ["1m", "5m", "1h", "1d"]) if (span / TH.BUCKET_MS[b] <= 240) return b;
  return "1d";
};

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

const axisFormats = {
  "1m": new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" }),
  "5m": new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" }),
  "1h": new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }),
  "1d": new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" }),
};
const tipFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", year: "numeric", hour: "2-digit", minute: "2-digit" });

// A round step (in buckets) that leaves about `want` labels.
function tickStep(n, want) {
  const raw = Math.max(1, n / want);
  for (const s of [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 24, 30, 48, 60, 72, 96, 120, 144, 168, 288, 336, 720]) if (s >= raw) return s;
  return Math.ceil(raw);
}

// Draws `h` (the histogram API's answer) into `container`; `onRange` narrows the timeline.
TH.drawChart = function (container, h, onRange) {
  const buckets = h.buckets || [];
  const size = TH.BUCKET_MS[h.bucket] || 3600e3;
  const width = Math.max(320, container.clientWidth || 900);
  const height = 190;
  const m = { left: 44, right: 8, top: 10, bottom: 26 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "events over time" });
  const groups = [...new Set(buckets.flatMap((b) => Object.keys(b.counts)))].sort();
  const color = (g) => TH.COLORS[groups.indexOf(g) % TH.COLORS.length];
  const max = Math.max(1, ...buckets.map((b) => b.total));
  const n = Math.max(1, buckets.length);
  const bw = plotW / n;

  // y axis: 0, half, max
  const yAxis = svg("g", { class: "axis y-axis", "data-testid": "chart-y-axis" });
  for (const v of new Set([0, Math.round(max / 2), max])) {
    const y = m.top + plotH - (v / max) * plotH;
    yAxis.append(svg("line", { x1: m.left, x2: width - m.right, y1: y, y2: y, class: "grid" }));
    yAxis.append(svg("text", { x: m.left - 6, y: y + 4, "text-anchor": "end" }, TH.num(v)));
  }
  root.append(yAxis);

  // bars
  const bars = svg("g", { class: "bars" });
  buckets.forEach((b, i) => {
    const x = m.left + i * bw;
    const g = svg("g", { class: "bar", "data-index": i, "data-start": b.start });
    const start = new Date(b.start);
    const end = new Date(start.getTime() + size);
    const lines = [`${tipFormat.format(start)} – ${tipFormat.format(end)}: ${TH.num(b.total)} events`];
    for (const k of groups) if (b.counts[k]) lines.push(`${k}: ${TH.num(b.counts[k])}`);
    g.append(svg("title", {}, lines.join("\n")));
    g.append(svg("rect", { x, y: m.top, width: Math.max(1, bw), height: plotH, class: "hit" }));
    let y = m.top + plotH;
    for (const k of groups) {
      const c = b.counts[k] || 0;
      if (!c) continue;
      const bh = (c / max) * plotH;
      g.append(svg("rect", { x: x + (bw > 3 ? 0.5 : 0), y: y - bh, width: Math.max(1, bw - (bw > 3 ? 1 : 0)), height: bh, fill: color(k) }));
      y -= bh;
    }
    bars.append(g);
  });
  root.append(bars);

  // x axis with tick labels in the viewer's zone
  const xAxis = svg("g", { class: "axis x-axis", "data-testid": "chart-axis" });
  xAxis.append(svg("line", { x1: m.left, x2: width - m.right, y1: m.top + plotH, y2: m.top + plotH, class: "base" }));
  const fmt = axisFormats[h.bucket] || axisFormats["1h"];
  // a label is about 110 px wide with a date and a time, 50 px with one of them
  const labelsWanted = Math.max(2, Math.floor(plotW / (h.bucket === "1h" ? 165 : 85)));
  const step = tickStep(buckets.length, labelsWanted);
  for (let i = 0; i < buckets.length; i += step) {
    const x = m.left + i * bw;
    xAxis.append(svg("line", { x1: x, x2: x, y1: m.top + plotH, y2: m.top + plotH + 4, class: "tick" }));
    xAxis.append(svg("text", { x, y: height - 8, "text-anchor": i === 0 ? "start" : "middle", class: "tick-label" }, fmt.format(new Date(buckets[i].start))));
  }
  root.append(xAxis);

  // selection: a click narrows to one bucket, a drag to the buckets it crosses
  const sel = svg("rect", { class: "selection", y: m.top, height: plotH, x: 0, width: 0, visibility: "hidden" });
  root.append(sel);
  const indexAt = (ev) => {
    const r = root.getBoundingClientRect();
    const x = ev.clientX - r.left - m.left;
    return Math.min(buckets.length - 1, Math.max(0, Math.floor(x / bw)));
  };
  let from = null;
  root.addEventListener("mousedown", (ev) => {
    if (!buckets.length || ev.button !== 0) return;
    ev.preventDefault();
    from = indexAt(ev);
    sel.setAttribute("x", m.left + from * bw);
    sel.setAttribute("width", bw);
    sel.setAttribute("visibility", "visible");
  });
  root.addEventListener("mousemove", (ev) => {
    if (from === null) return;
    const to = indexAt(ev);
    const a = Math.min(from, to);
    sel.setAttribute("x", m.left + a * bw);
    sel.setAttribute("width", (Math.abs(to - from) + 1) * bw);
  });
  const narrow = (a, b) => {
    const since = new Date(buckets[a].start);
    const until = new Date(new Date(buckets[b].start).getTime() + size);
    onRange(since.toISOString(), until.toISOString());
  };
  let handled = false;
  root.addEventListener("mouseup", (ev) => {
    if (from === null) return;
    const to = indexAt(ev);
    const a = Math.min(from, to);
    const b = Math.max(from, to);
    from = null;
    handled = true;
    narrow(a, b);
  });
  // a click that came without the mouse (keyboard, a script): the bar it names
  root.addEventListener("click", (ev) => {
    if (handled) { handled = false; return; }
    const g = ev.target.closest && ev.target.closest("g.bar");
    if (g) { const i = Number(g.dataset.index); narrow(i, i); }
  });
  root.addEventListener("mouseleave", () => { from = null; sel.setAttribute("visibility", "hidden"); });

  container.replaceChildren(root);
  return groups.map((g) => ({ name: g, color: color(g) }));
};
