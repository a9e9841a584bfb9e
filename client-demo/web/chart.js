// chart.js - a small time-series chart on a <canvas>: up to two lines over
// a sliding window (an hour by default), one y axis on each side, grid,
// labels. It keeps its own points (one per second at most, a bounded
// number), redraws when the canvas is resized or the screen's pixel ratio
// changes, and draws at device resolution. Colours, line style and font
// come from CSS custom properties on the canvas, so the page's stylesheet
// owns the look:
//   --chart-grid, --chart-text, --chart-<series key> (each series' colour)
// It knows nothing of earshot; the page says what the series are.

const DIVISIONS = 4;                 // horizontal grid lines: both axes share them
const COUNT_STEPS = [1, 2, 5];       // ×10^k: "nice" steps for a count axis
const TIME_STEPS_S = [15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
const X_STEPS_MIN = [1, 2, 5, 10, 15, 20, 30];
const FONT_PX = 12;

// A step for a count axis so that DIVISIONS steps cover `max`, at least 1.
function countStep(max) {
  const raw = Math.max(1, max / DIVISIONS);
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const s of COUNT_STEPS) if (s * mag >= raw) return s * mag;
  return 10 * mag;
}

// A step in seconds so that DIVISIONS steps cover `max`, at least 15 s.
function timeStep(max) {
  const raw = max / DIVISIONS;
  for (const s of TIME_STEPS_S) if (s >= raw) return s;
  return Math.ceil(raw / 3600) * 3600;
}

export class TimeChart {
  // series: [{ key, axis: 'left' | 'right', kind: 'count' | 'seconds',
  //            format(v) -> string, step: true for a step line, dash: [] }]
  constructor(canvas, { series, windowMs = 3600 * 1000, maxPoints = 3600,
                        minSpanMs = 5 * 60 * 1000 }) {
    this.canvas = canvas;
    this.series = series;
    this.windowMs = windowMs;
    this.maxPoints = maxPoints;
    this.minSpanMs = minSpanMs;
    this.points = [];                 // { t (ms), v: { key: number } | null (a gap) }
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(canvas);
    this.watchPixelRatio();
  }

  // The pixel ratio changes when the window moves to another screen or the
  // page is zoomed; a media query on the current ratio says when.
  watchPixelRatio() {
    const mq = matchMedia(`(resolution: ${window.devicePixelRatio || 1}dppx)`);
    mq.addEventListener('change', () => {
      this.watchPixelRatio();
      this.draw();
    }, { once: true });
  }

  get length() {
    return this.points.length;
  }

  // Record `values` ({ key: number }) at time `t` (ms). A second sample in
  // the same second replaces the first, so the bound is at least an hour
  // of once-a-second points however often values arrive.
  add(t, values) {
    const last = this.points[this.points.length - 1];
    if (last && last.v && Math.floor(last.t / 1000) === Math.floor(t / 1000)) {
      last.v = { ...values };
      return;
    }
    this.points.push({ t, v: { ...values } });
    this.trim(t);
  }

  // The lines break here (the data stopped: connection lost).
  gap(t) {
    const last = this.points[this.points.length - 1];
    if (!last || !last.v) return;
    this.points.push({ t, v: null });
    this.trim(t);
  }

  trim(now) {
    // Keep one point older than the window so the lines reach its left edge.
    while (this.points.length > 1 && this.points[1].t < now - this.windowMs) this.points.shift();
    while (this.points.length > this.maxPoints) this.points.shift();
  }

  // { min, max } of series `key` since `since` (ms), or null without data.
  extent(key, since) {
    let min = Infinity;
    let max = -Infinity;
    for (const p of this.points) {
      if (p.t < since || !p.v) continue;
      min = Math.min(min, p.v[key]);
      max = Math.max(max, p.v[key]);
    }
    return min === Infinity ? null : { min, max };
  }

  draw(now = Date.now()) {
    const c = this.canvas;
    const w = c.clientWidth;
    const h = c.clientHeight;
    if (w === 0 || h === 0) return;
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const ctx = c.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    c.dataset.points = String(this.points.length);

    const css = getComputedStyle(c);
    const prop = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
    const text = prop('--chart-text', '#555');
    ctx.font = `${FONT_PX}px ${css.fontFamily}`;
    ctx.textBaseline = 'middle';

    // The time span: from the first point (at least minSpan) up to the window.
    const first = this.points.length ? this.points[0].t : now;
    const span = Math.min(this.windowMs, Math.max(this.minSpanMs, now - first));
    const t0 = now - span;

    // The y scales, from what is visible.
    const axes = {};
    for (const s of this.series) {
      const e = this.extent(s.key, t0 - 1000);
      const max = e ? e.max : 0;
      const step = s.kind === 'seconds' ? timeStep(max) : countStep(max);
      axes[s.axis] = { s, step, top: step * DIVISIONS };
    }
    const labelWidth = (a) => (a ? Math.max(...Array.from({ length: DIVISIONS + 1 },
      (_, i) => ctx.measureText(a.s.format(a.step * i)).width)) : 0);
    const pad = {
      left: Math.ceil(labelWidth(axes.left)) + 10,
      right: Math.ceil(labelWidth(axes.right)) + 10,
      top: FONT_PX,
      bottom: FONT_PX + 14,
    };
    const plot = { x: pad.left, y: pad.top, w: w - pad.left - pad.right, h: h - pad.top - pad.bottom };
    if (plot.w < 20 || plot.h < 20) return;
    const xOf = (t) => plot.x + ((t - t0) / span) * plot.w;

    // Grid and y labels.
    ctx.strokeStyle = prop('--chart-grid', '#ddd');
    ctx.lineWidth = 1;
    ctx.fillStyle = text;
    for (let i = 0; i <= DIVISIONS; i++) {
      const y = Math.round(plot.y + plot.h - (i / DIVISIONS) * plot.h) + 0.5;
      ctx.beginPath();
      ctx.moveTo(plot.x, y);
      ctx.lineTo(plot.x + plot.w, y);
      ctx.stroke();
      if (axes.left) {
        ctx.textAlign = 'right';
        ctx.fillText(axes.left.s.format(axes.left.step * i), plot.x - 6, y);
      }
      if (axes.right) {
        ctx.textAlign = 'left';
        ctx.fillText(axes.right.s.format(axes.right.step * i), plot.x + plot.w + 6, y);
      }
    }

    // X ticks: minutes before now, as many labels as fit without touching.
    const widest = ctx.measureText(`−${Math.ceil(span / 60000)} min`).width;
    const fit = Math.max(1, Math.floor(plot.w / (widest + 24)));
    const stepMin = X_STEPS_MIN.find((m) => (span / 60000) / m <= fit) || 60;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    let leftmost = Infinity;             // labels go right to left; none may overlap
    for (let m = 0; m * 60000 <= span; m += stepMin) {
      const x = Math.round(xOf(now - m * 60000)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, plot.y + plot.h);
      ctx.lineTo(x, plot.y + plot.h + 4);
      ctx.stroke();
      const label = m === 0 ? 'now' : `−${m} min`;
      const lw = ctx.measureText(label).width;
      const lx = Math.min(Math.max(x, lw / 2), w - lw / 2);
      if (lx + lw / 2 > leftmost - 8) continue;
      ctx.fillText(label, lx, plot.y + plot.h + 6);
      leftmost = lx - lw / 2;
    }

    // The lines, clipped to the plot.
    ctx.save();
    ctx.beginPath();
    ctx.rect(plot.x, plot.y - 2, plot.w + 2, plot.h + 4);
    ctx.clip();
    for (const s of this.series) {
      const a = axes[s.axis];
      const yOf = (v) => plot.y + plot.h - (v / a.top) * plot.h;
      ctx.strokeStyle = prop(`--chart-${s.key}`, '#000');
      ctx.fillStyle = ctx.strokeStyle;
      ctx.lineWidth = 2;
      ctx.lineJoin = 'round';
      ctx.setLineDash(s.dash || []);
      ctx.beginPath();
      let prev = null;
      let lastXY = null;
      for (const p of this.points) {
        if (!p.v) {
          prev = null;
          continue;
        }
        const x = xOf(p.t);
        const y = yOf(p.v[s.key]);
        if (!prev) ctx.moveTo(x, y);
        else if (s.step) {
          ctx.lineTo(x, prev.y);
          ctx.lineTo(x, y);
        } else ctx.lineTo(x, y);
        prev = { x, y };
        lastXY = prev;
      }
      ctx.stroke();
      ctx.setLineDash([]);
      const last = this.points[this.points.length - 1];
      if (lastXY && last && last.v) {
        ctx.beginPath();
        ctx.arc(lastXY.x, lastXY.y, 3, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    ctx.restore();
  }

  destroy() {
    this.resizeObserver.disconnect();
  }
}
