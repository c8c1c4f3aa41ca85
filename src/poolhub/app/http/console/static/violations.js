// Violations: open or resolved, filtered by type and severity on the server, with their durations.
"use strict";

const VIOLATIONS_PAGE = 50;

PH.pages.violations = async (view, args, query) => {
  const h = PH.h;
  const f = PH.fmt;
  const resolved = query.get("resolved") === "true";
  const offset = Number(query.get("offset") || 0);
  const params = new URLSearchParams({ resolved: String(resolved), offset: String(offset), limit: String(VIOLATIONS_PAGE) });
  for (const key of ["violation_type", "severity", "miner_id"]) if (query.get(key)) params.set(key, query.get(key));
  const { body, total } = await PH.api(`/console/api/violations?${params}`);

  const apply = (nextOffset = 0) => {
    const q = new URLSearchParams();
    for (const el of form.elements) if (el.name && el.value) q.set(el.name, el.value);
    if (nextOffset) q.set("offset", String(nextOffset));
    PH.go("violations", [], q);
  };
  const form = h(
    "form",
    { class: "filters", id: "violation-filters", onsubmit: (e) => (e.preventDefault(), apply()) },
    PH.field("State", PH.select("resolved", [["false", "open"], ["true", "resolved"]], String(resolved))),
    PH.field("Type", PH.select("violation_type", [["", "any"], ...Object.entries(PH.VIOLATION_WORDS)], query.get("violation_type"))),
    PH.field("Severity", PH.select("severity", [["", "any"], ["low", "low"], ["medium", "medium"], ["high", "high"], ["critical", "critical"]], query.get("severity"))),
    PH.field("Miner", h("input", { name: "miner_id", value: query.get("miner_id") || "", pattern: "[A-Za-z0-9._:\\-]{1,64}" })),
    h("button", { type: "submit" }, "Apply"),
  );
  for (const select of form.querySelectorAll("select")) select.addEventListener("change", () => apply());

  const better = { uptime_pct: "≥", completion_rate_pct: "≥", capacity_availability_pct: "≥", response_time_ms: "≤", capacity_forecast: "<" };
  view.append(
    h("div", { class: "page-head" }, h("h1", {}, "Violations"), h("p", { class: "updated", id: "violations-total" }, `${f.int(total)} ${resolved ? "resolved" : "open"}`)),
    form,
    PH.table(
      [
        { label: "subject", cell: (v) => (v.miner_id ? h("a", { href: `#/miners/${encodeURIComponent(v.miner_id)}` }, v.miner_id) : "pool") },
        { label: "type", cell: (v) => PH.VIOLATION_WORDS[v.violation_type] || v.violation_type },
        { label: "severity", cell: (v) => PH.badge(v.severity, PH.SEVERITY_TONE[v.severity]) },
        { label: "value", num: true, cell: (v) => f.num(v.metric_value, 1) },
        { label: "threshold", num: true, cell: (v) => `${better[v.violation_type] || ""} ${f.num(v.threshold, 0)}` },
        { label: "opened", cell: (v) => f.time(v.created_at) },
        { label: resolved ? "resolved" : "state", cell: (v) => (v.resolved_at ? f.time(v.resolved_at) : PH.badge("open", "bad")) },
        { label: "duration", num: true, cell: (v) => (v.duration_sec !== null ? f.duration(v.duration_sec) : `${f.duration((Date.now() - Date.parse(v.created_at)) / 1000)} so far`) },
      ],
      body,
      { empty: resolved ? "No resolved violation matches: violations are resolved when a later collection measures the metric back within its threshold." : "No open violation matches: the pool is within its SLA thresholds." },
    ),
    PH.pager(offset, VIOLATIONS_PAGE, total, apply),
  );
};
