// Charts over uPlot (vendored in static/vendor, MIT). Time axes in UTC, like every time in the console.
"use strict";

PH.charts = [];

PH.COLORS = {
  primary: "#1f4e79",
  forecast: "#b35c00",
  band: "rgba(179, 92, 0, 0.18)",
  threshold: "#b00020",
  ok: "#1b7f3b",
  grid: "rgba(0, 0, 0, 0.08)",
};

const utcDate = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
const pad = (n) => String(n).padStart(2, "0");
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

// Tick labels in UTC, 24-hour, as coarse as the span allows: "Dec 7" over days, "14:00" within a day.
function timeTicks(u, splits) {
  const span = u.scales.x.max - u.scales.x.min;
  return splits.map((ts) => {
    const d = new Date(ts * 1000);
    const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    if (span > 3 * 86400) return `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
    if (span > 86400) return d.getUTCHours() === 0 && d.getUTCMinutes() === 0 ? `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}` : hm;
    if (span > 600) return hm;
    return `${hm}:${pad(d.getUTCSeconds())}`;
  });
}

PH.chart = function chart(container, { title, data, series, bands, yRange, height = 220, yLabel, yFormat }) {
  const width = Math.max(260, Math.floor(container.clientWidth || 600));
  const fmtValue = yFormat || ((v) => PH.fmt.num(v, 1));
  const opts = {
    title,
    width,
    height,
    tzDate: utcDate,
    series: [
      { label: "time (UTC)", value: (u, v) => (v === null || v === undefined ? "—" : PH.fmt.time(new Date(v * 1000).toISOString())) },
      ...series.map((s) => ({ value: (u, v) => (v === null || v === undefined ? "—" : fmtValue(v)), spanGaps: false, ...s })),
    ],
    bands: bands || [],
    scales: { x: { time: true }, y: yRange ? { range: yRange } : { auto: true } },
    axes: [
      { stroke: "#333", grid: { stroke: PH.COLORS.grid }, values: timeTicks, space: 70 },
      { label: yLabel, stroke: "#333", size: 56, grid: { stroke: PH.COLORS.grid }, values: (u, vals) => vals.map((v) => fmtValue(v)) },
    ],
    legend: { show: true, live: false },
    cursor: { drag: { x: false, y: false } },
  };
  const plot = new uPlot(opts, data, container);
  container.dataset.drawn = "true";
  container.dataset.points = String(data[0].length);
  container.dataset.series = series.map((s) => s.label).join("|");
  PH.charts.push({ plot, container, height });
  return plot;
};

// A points-only series (the forecast's crossing point): no line between points.
PH.markerSeries = (label, color) => ({
  label,
  stroke: color,
  fill: color,
  width: 0,
  paths: () => null,
  points: { show: true, size: 12, stroke: color, fill: color },
});

PH.resetCharts = () => {
  for (const { plot } of PH.charts) plot.destroy();
  PH.charts = [];
};

window.addEventListener("resize", () => {
  for (const { plot, container, height } of PH.charts) {
    if (container.isConnected) plot.setSize({ width: Math.max(260, Math.floor(container.clientWidth)), height });
  }
});
