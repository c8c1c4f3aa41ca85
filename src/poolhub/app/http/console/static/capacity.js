// Capacity: utilisation history and the forecast in one chart (95 % band, alert threshold, crossing point),
// then the recommendations.
"use strict";

PH.pages.capacity = async (view, args, query) => {
  const h = PH.h;
  const f = PH.fmt;
  const horizon = Number(query.get("hours_ahead") || 168);
  const historyHours = Number(query.get("history") || 168);
  const [snapshots, forecast, plan] = await Promise.all([
    PH.api(`/sla/capacity/snapshots?hours=${historyHours}&limit=500`),
    PH.api(`/sla/capacity/forecast?hours_ahead=${horizon}`),
    PH.api("/sla/capacity/recommendations"),
  ]);
  const fc = forecast.body;
  const threshold = fc.alert_threshold_pct;
  const crossing = fc.points.find((p) => p.utilization_pct >= threshold) || null;

  const controls = h(
    "form",
    { class: "filters", id: "capacity-controls" },
    PH.field("History", PH.select("history", [["24", "1 day"], ["72", "3 days"], ["168", "7 days"], ["336", "14 days"]], String(historyHours))),
    PH.field("Forecast", PH.select("hours_ahead", [["24", "24 h"], ["72", "72 h"], ["168", "168 h"], ["336", "336 h"]], String(horizon))),
  );
  for (const select of controls.querySelectorAll("select")) {
    select.addEventListener("change", () => {
      const q = new URLSearchParams();
      for (const el of controls.elements) if (el.name) q.set(el.name, el.value);
      PH.go("capacity", [], q);
    });
  }
  const state = plan.body.current_state;
  const summary = h(
    "p",
    { id: "capacity-summary", class: "big" },
    PH.badge(state.replace("_", " "), PH.STATUS_TONE[state]),
    ` Now ${f.pct(fc.current_utilization_pct)} of slots in use; forecast peak ${f.pct(fc.peak.utilization_pct)} at ${f.time(fc.peak.timestamp)}. `,
    fc.hours_until_threshold === null
      ? `The ${f.pct(threshold, 0)} alert threshold is not reached within ${fc.forecast_horizon_hours} h.`
      : h("strong", { id: "capacity-crossing" }, `The ${f.pct(threshold, 0)} alert threshold is reached in ${fc.hours_until_threshold} h (${f.time(crossing ? crossing.timestamp : null)}).`),
  );
  const box = h("div", { class: "chart", id: "capacity-chart" });
  view.append(
    h("div", { class: "page-head" }, h("h1", {}, "Capacity")),
    controls,
    summary,
    h(
      "figure",
      { class: "card chart-card wide" },
      h("figcaption", {}, `Slot utilisation: measured (last ${historyHours / 24} days) and forecast (${fc.method.replaceAll("_", " ")}, ${f.int(fc.history_points)} hourly points) with its 95 % band`),
      box,
    ),
  );

  const history = [...snapshots.body].reverse();
  if (!history.length && fc.method === "none") {
    box.append(
      h("p", { class: "empty" }, "No capacity history yet: snapshots are taken at each SLA collection (", h("code", {}, "POST /sla/metrics/collect"), "), or load three weeks of synthetic ones with ", h("code", {}, "poolhub seed-capacity --days 21"), "."),
    );
  } else {
    const xs = [];
    const measured = [];
    const predicted = [];
    const lower = [];
    const upper = [];
    const marker = [];
    for (const s of history) {
      xs.push(Date.parse(s.timestamp) / 1000);
      measured.push(s.capacity_utilization_pct);
      predicted.push(null);
      lower.push(null);
      upper.push(null);
      marker.push(null);
    }
    for (const p of fc.points) {
      xs.push(Date.parse(p.timestamp) / 1000);
      measured.push(null);
      predicted.push(p.utilization_pct);
      lower.push(p.lower_pct);
      upper.push(p.upper_pct);
      marker.push(p === crossing ? p.utilization_pct : null);
    }
    const thresholdLine = xs.map(() => threshold);
    PH.chart(box, {
      height: 320,
      data: [xs, measured, predicted, upper, lower, thresholdLine, marker],
      series: [
        { label: "measured %", stroke: PH.COLORS.primary, width: 2 },
        { label: "forecast %", stroke: PH.COLORS.forecast, width: 2, dash: [8, 4] },
        { label: "95 % band (upper)", stroke: PH.COLORS.band, width: 1 },
        { label: "95 % band (lower)", stroke: PH.COLORS.band, width: 1 },
        { label: `alert threshold ${threshold} %`, stroke: PH.COLORS.threshold, width: 1.5, dash: [4, 4] },
        PH.markerSeries("threshold crossed", PH.COLORS.threshold),
      ],
      bands: [{ series: [3, 4], fill: PH.COLORS.band }],
      yRange: [0, 100],
      yLabel: "% of slots",
    });
    box.dataset.crossing = crossing ? crossing.timestamp : "";
    box.dataset.threshold = String(threshold);
  }

  const recs = plan.body.recommendations;
  view.append(
    h("h2", {}, "Recommendations"),
    PH.table(
      [
        { label: "priority", cell: (r) => PH.badge(r.priority, { low: "low", medium: "medium", high: "high", critical: "critical" }[r.priority]) },
        { label: "action", cell: (r) => `${r.action.replaceAll("_", " ")}${r.quantity ? ` ${r.quantity}` : ""}` },
        { label: "why", cell: (r) => r.reason },
      ],
      recs,
      { empty: "No recommendation." },
    ),
  );
};
