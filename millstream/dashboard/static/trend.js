// The tag trend: uPlot (vendored, global `uPlot`) with the window mean, its min..max band,
// the tag's normal range, and anomaly and alarm markers as point-only series.

const COLORS = { mean: "#1a73e8", band: "#8ab4f8", range: "#9aa0a6", anomaly: "#d93025", alarm: "#8e0000" };

// index of the x nearest to t (x sorted ascending), or -1
function nearest(xs, t) {
  if (!xs.length) return -1;
  let lo = 0, hi = xs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < t) lo = mid + 1; else hi = mid;
  }
  return lo > 0 && Math.abs(xs[lo - 1] - t) < Math.abs(xs[lo] - t) ? lo - 1 : lo;
}

// series: {t: [ms], value, min, max}; markers: {anomalies: [{t, value?}], alarms: [{t}]}
export function chartData(series, markers, low, high) {
  const xs = series.t.map((t) => t / 1000);
  const anomaly = new Array(xs.length).fill(null);
  const alarm = new Array(xs.length).fill(null);
  for (const a of markers.anomalies) {
    const i = nearest(xs, a.t / 1000);
    if (i >= 0 && Math.abs(xs[i] - a.t / 1000) < 3600) anomaly[i] = a.feature === "mean" ? a.value : series.value[i];
  }
  for (const a of markers.alarms) {
    const i = nearest(xs, a.t / 1000);
    if (i >= 0 && Math.abs(xs[i] - a.t / 1000) < 3600) alarm[i] = series.value[i];
  }
  const flat = (v) => xs.map(() => (v === null || v === undefined ? null : v));
  return [xs, series.value, series.min, series.max, flat(low), flat(high), anomaly, alarm];
}

export class Trend {
  constructor(el, unit) {
    this.el = el;
    const points = (fill, size) => ({ show: true, size, fill, stroke: fill, width: 1 });
    const opts = {
      width: Math.max(300, el.clientWidth - 16), height: 320,
      scales: { x: { time: true } },
      legend: { live: true },
      series: [
        {},
        { label: "mean", stroke: COLORS.mean, width: 2, spanGaps: false },
        { label: "min", stroke: COLORS.band, width: 1 },
        { label: "max", stroke: COLORS.band, width: 1 },
        { label: "low", stroke: COLORS.range, width: 1, dash: [6, 4], points: { show: false } },
        { label: "high", stroke: COLORS.range, width: 1, dash: [6, 4], points: { show: false } },
        { label: "anomaly", stroke: COLORS.anomaly, paths: () => null, points: points(COLORS.anomaly, 9) },
        { label: "alarm", stroke: COLORS.alarm, paths: () => null, points: points(COLORS.alarm, 13) },
      ],
      bands: [{ series: [3, 2], fill: "rgba(138,180,248,0.18)" }],
      axes: [{}, { label: unit || "", size: 60 }],
    };
    this.plot = new uPlot(opts, [[], [], [], [], [], [], [], []], el);
    this.onResize = () => this.plot.setSize({ width: Math.max(300, el.clientWidth - 16), height: 320 });
    window.addEventListener("resize", this.onResize);
  }

  set(data) {
    this.plot.setData(data);
    const marks = (ys) => String(ys.filter((y) => y !== null).length);
    Object.assign(this.el.dataset, { points: String(data[0].length), anomalies: marks(data[6]), alarms: marks(data[7]) });
  }

  destroy() {
    window.removeEventListener("resize", this.onResize);
    this.plot.destroy();
  }
}
