// Miners: a filtered, sorted table paged on the server, and one miner's page with its SLA charts and
// "why was this miner not chosen?" for a sample job.
"use strict";

const MINERS_PAGE = 25;

PH.pages.miners = async (view, args, query) => {
  if (args.length && args[0]) return PH.minerPage(view, args[0]);
  const h = PH.h;
  const f = PH.fmt;
  const params = new URLSearchParams();
  for (const key of ["search", "online", "region", "accel", "has_violation", "sort", "order", "offset"]) {
    if (query.get(key)) params.set(key, query.get(key));
  }
  params.set("limit", String(MINERS_PAGE));
  const offset = Number(query.get("offset") || 0);
  const { body } = await PH.api(`/console/api/miners?${params}`);

  const apply = (form, nextOffset = 0) => {
    const q = new URLSearchParams();
    for (const el of form.elements) if (el.name && el.value) q.set(el.name, el.value);
    if (nextOffset) q.set("offset", String(nextOffset));
    PH.go("miners", [], q);
  };
  const form = h(
    "form",
    { class: "filters", id: "miner-filters", role: "search", onsubmit: (e) => (e.preventDefault(), apply(form)) },
    PH.field("Search", h("input", { type: "search", name: "search", value: query.get("search") || "", placeholder: "id, GPU, tag, capability" })),
    PH.field("Status", PH.select("online", [["", "any"], ["true", "online"], ["false", "offline"]], query.get("online"))),
    PH.field("Region", PH.select("region", [["", "any"], ...body.regions.map((r) => [r, r])], query.get("region"))),
    PH.field("Accel", PH.select("accel", [["", "any"], ...body.accels.map((a) => [a, a])], query.get("accel"))),
    PH.field("Open violation", PH.select("has_violation", [["", "any"], ["true", "has one"], ["false", "none"]], query.get("has_violation"))),
    PH.field("Sort by", PH.select("sort", [["miner_id", "id"], ["trust", "trust"], ["load", "load"]], query.get("sort") || "miner_id")),
    PH.field("Order", PH.select("order", [["asc", "ascending"], ["desc", "descending"]], query.get("order") || "asc")),
    h("button", { type: "submit" }, "Apply"),
  );
  for (const select of form.querySelectorAll("select")) select.addEventListener("change", () => apply(form));

  const filtered = [...params.keys()].some((k) => !["limit", "sort", "order", "offset"].includes(k));
  const empty = filtered
    ? "No miner matches these filters: widen them or clear the search."
    : ["No miners yet: start some with ", h("code", {}, "poolhub simulate --url http://127.0.0.1:8210 --miners 20"), " (or ", h("code", {}, "make demo"), ")."];
  view.append(
    h("div", { class: "page-head" }, h("h1", {}, "Miners"), h("p", { class: "updated", id: "miners-total" }, `${f.int(body.total)} miners match`)),
    form,
    PH.table(
      [
        { label: "miner", cell: (r) => h("a", { href: `#/miners/${encodeURIComponent(r.miner.miner_id)}` }, r.miner.miner_id) },
        { label: "status", cell: (r) => (r.miner.online ? PH.badge("online", "ok") : PH.badge("offline", "off")) },
        { label: "region", cell: (r) => r.miner.region || "—" },
        { label: "GPU", cell: (r) => `${r.miner.gpu_count} × ${r.miner.gpu_name || "GPU"} (${r.miner.gpu_vram_gb} GB)` },
        { label: "accel", cell: (r) => r.miner.accel },
        { label: "load", num: true, cell: (r) => `${r.miner.busy ? "busy" : `${Math.min(r.miner.queue_len, r.miner.max_parallel)}/${r.miner.max_parallel}`} (${f.pct(100 * r.load, 0)})` },
        { label: "trust", num: true, cell: (r) => `${f.num(r.miner.trust_score, 3)} (${f.num(r.miner.trust_samples, 1)} samples)` },
        { label: "price", num: true, cell: (r) => r.miner.price_token_per_ksec },
        { label: "open violations", num: true, cell: (r) => (r.open_violations ? PH.badge(String(r.open_violations), "bad") : "0") },
      ],
      body.items,
      { empty, caption: "Miners (price in tokens per 1,000 s)" },
    ),
    PH.pager(offset, MINERS_PAGE, body.total, (next) => apply(form, next)),
  );
};

const METRIC_CHARTS = [
  { type: "uptime_pct", title: "Uptime over the window", unit: "%", yRange: [0, 100], better: "at least" },
  { type: "response_time_ms", title: "p95 response time", unit: "ms", better: "at most" },
  { type: "completion_rate_pct", title: "Completion rate", unit: "%", yRange: [0, 100], better: "at least" },
];

const REASON_WORDS = {
  offline: "offline: its lease lapsed or it logged out",
  full: "full: no free slot, or it reports busy",
  vram: "vram: less GPU memory than min_vram_gb",
  ram: "ram: less RAM than min_ram_gb",
  accel: "accel: its accelerator is not in the list",
  tags: "tags: it has none of tags_any",
  capabilities: "capabilities: it has none of capabilities_any",
  region: "region: not the hinted region",
  price: "price: dearer than max_price",
  deadline: "deadline: its eta is over deadline_ms",
};

PH.minerPage = async (view, minerId) => {
  const h = PH.h;
  const f = PH.fmt;
  const id = encodeURIComponent(minerId);
  let found;
  try {
    found = (await PH.api(`/console/api/miners/${id}`)).body;
  } catch (err) {
    if (err.status === 404 || err.status === 400) {
      view.append(h("h1", {}, "Miner not found"), PH.message(err.message, "warn"), h("p", {}, h("a", { href: "#/miners" }, "← All miners")));
      return;
    }
    throw err;
  }
  const [metrics, open, resolved] = await Promise.all([
    PH.api(`/sla/metrics/${id}?hours=24&limit=500`),
    PH.api(`/sla/violations?miner_id=${id}&resolved=false&limit=100`),
    PH.api(`/sla/violations?miner_id=${id}&resolved=true&limit=100`),
  ]);
  const m = found.miner;
  view.append(
    h("p", {}, h("a", { href: "#/miners" }, "← All miners")),
    h("div", { class: "page-head" }, h("h1", {}, `Miner ${m.miner_id}`), m.online ? PH.badge("online", "ok") : PH.badge("offline", "off")),
    h(
      "div",
      { class: "cards" },
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Specification"),
        h(
          "dl",
          { class: "facts" },
          ...[
            ["GPU", `${m.gpu_count} × ${m.gpu_name || "GPU"}, ${m.gpu_vram_gb} GB, ${m.accel}`],
            ["CPU / RAM", `${m.cpu_cores} cores, ${m.ram_gb} GB`],
            ["region", m.region || "—"],
            ["price", `${m.price_token_per_ksec} per 1,000 s`],
            ["slots", String(m.max_parallel)],
            ["address", `${m.addr} (${m.proto})`],
            ["tags", m.tags.join(", ") || "—"],
            ["capabilities", m.capabilities.join(", ") || "—"],
          ].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
        ),
      ),
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Status and trust"),
        h(
          "dl",
          { class: "facts" },
          ...[
            ["load", m.busy ? "busy (takes no job)" : `${m.queue_len} of ${m.max_parallel} slots (${f.pct(100 * found.load, 0)})`],
            ["latency", m.avg_latency_ms === null ? "unknown" : `${f.num(m.avg_latency_ms, 0)} ms`],
            ["last beat", `${f.time(m.last_beat_at)} (${f.ago(m.last_beat_at)})`],
            ["lease until", f.time(m.lease_expires_at)],
            ["registered", f.time(m.registered_at)],
            ["trust", `${f.num(m.trust_score, 3)} from ${f.num(m.trust_samples, 1)} samples (prior 0.5)`],
            ["open violations", String(found.open_violations)],
          ].flatMap(([k, v]) => [h("dt", {}, k), h("dd", { id: k === "trust" ? "miner-trust" : null }, v)]),
        ),
      ),
    ),
  );

  const chartsBox = h("div", { class: "charts-grid", id: "miner-charts" });
  view.append(h("h2", {}, "SLA metrics over time"), chartsBox);
  const points = [...metrics.body].reverse();
  if (!points.length) {
    chartsBox.append(
      h("p", { class: "empty" }, "No SLA metrics yet: they appear after a collection (every SLA_COLLECTION_INTERVAL_SECONDS, or POST /sla/metrics/collect)."),
    );
  }
  for (const spec of METRIC_CHARTS) {
    const series = points.filter((p) => p.metric_type === spec.type);
    if (!points.length) break;
    const box = h("div", { class: "chart", id: `chart-${spec.type}` });
    const latest = series[series.length - 1];
    chartsBox.append(
      h(
        "figure",
        { class: "card chart-card" },
        h("figcaption", {}, spec.title, latest ? ` — now ${f.num(latest.metric_value, 1)} ${spec.unit} (threshold ${spec.better} ${f.num(latest.threshold, 0)} ${spec.unit}) ` : " — no samples in the window", latest ? (latest.is_violation ? PH.badge("breach", "bad") : PH.badge("ok", "ok")) : null),
        box,
      ),
    );
    if (!series.length) {
      box.append(h("p", { class: "empty" }, spec.type === "uptime_pct" ? "Not measured yet." : "Needs feedback with latency or outcomes in the window."));
      continue;
    }
    PH.chart(box, {
      height: 160,
      data: [series.map((p) => Date.parse(p.timestamp) / 1000), series.map((p) => p.metric_value), series.map((p) => p.threshold)],
      series: [
        { label: spec.unit === "%" ? `${spec.type.replace("_pct", "")} %` : "p95 ms", stroke: PH.COLORS.primary, width: 2, points: { show: true, size: 5 } },
        { label: "threshold", stroke: PH.COLORS.threshold, dash: [6, 4], width: 1.5, points: { show: false } },
      ],
      yRange: spec.yRange,
      yLabel: spec.unit,
    });
  }

  const violationRows = [...open.body, ...resolved.body];
  view.append(
    h("h2", {}, "Violations"),
    PH.table(
      [
        { label: "type", cell: (v) => PH.VIOLATION_WORDS[v.violation_type] || v.violation_type },
        { label: "severity", cell: (v) => PH.badge(v.severity, PH.SEVERITY_TONE[v.severity]) },
        { label: "value / threshold", num: true, cell: (v) => `${f.num(v.metric_value, 1)} / ${f.num(v.threshold, 0)}` },
        { label: "opened", cell: (v) => f.time(v.created_at) },
        { label: "state", cell: (v) => (v.resolved_at ? `resolved after ${f.duration(v.duration_sec)}` : `open for ${f.duration((Date.now() - Date.parse(v.created_at)) / 1000)}`) },
      ],
      violationRows,
      { empty: "No violations for this miner." },
    ),
  );

  view.append(explainForm(m));
};

function explainForm(m) {
  const h = PH.h;
  const result = h("div", { id: "explain-result", "aria-live": "polite" });
  const input = (name, label, attrs = {}) => PH.field(label, h("input", { name, ...attrs }));
  const form = h(
    "form",
    { class: "filters explain", id: "explain-form" },
    input("min_vram_gb", "min VRAM (GB)", { type: "number", min: 0, step: "any", value: "8" }),
    input("min_ram_gb", "min RAM (GB)", { type: "number", min: 0, step: "any" }),
    input("accel", "accel (comma list)", { value: "cuda" }),
    input("capabilities_any", "capabilities_any", { value: m.capabilities[0] || "" }),
    input("tags_any", "tags_any"),
    input("region", "region hint", { value: m.region || "" }),
    input("max_price", "max price", { inputmode: "decimal" }),
    input("deadline_ms", "deadline (ms)", { type: "number", min: 0 }),
    h("button", { type: "submit" }, "Explain"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = (name) => form.elements[name].value.trim();
    const list = (name) => (v(name) ? v(name).split(",").map((s) => s.trim()).filter(Boolean) : undefined);
    const num = (name) => (v(name) === "" ? undefined : Number(v(name)));
    const body = {
      miner_id: m.miner_id,
      requirements: { min_vram_gb: num("min_vram_gb"), min_ram_gb: num("min_ram_gb"), accel: list("accel"), capabilities_any: list("capabilities_any"), tags_any: list("tags_any") },
      hints: { region: v("region") || undefined, max_price: v("max_price") || undefined, deadline_ms: num("deadline_ms") },
    };
    try {
      const answer = (await PH.api("/console/api/explain", { method: "POST", body })).body;
      const e = answer.miner_explanation;
      result.replaceChildren(
        e.eligible
          ? h("p", {}, PH.badge("eligible", "ok"), ` Ranked ${e.rank} of ${answer.eligible_count} eligible miners with score ${PH.fmt.num(e.score, 3)}: `, e.rank === 1 ? "it would be chosen first." : `it is chosen when top_k ≥ ${e.rank}.`)
          : h("p", {}, PH.badge("not chosen", "bad"), ` It failed ${e.failed.length} constraint${e.failed.length === 1 ? "" : "s"}:`),
        e.failed.length ? h("ul", { id: "explain-failed" }, e.failed.map((r) => h("li", {}, REASON_WORDS[r] || r))) : null,
        h("p", { class: "muted" }, `Pool: ${answer.explain}. Nothing was recorded or billed.`),
        e.explain ? h("p", { class: "muted" }, h("code", {}, e.explain)) : null,
      );
    } catch (err) {
      result.replaceChildren(PH.message(err.message, "bad"));
    }
  });
  return h("section", { class: "card", "aria-labelledby": "explain-title" }, h("h2", { id: "explain-title" }, "Why was this miner not chosen?"), h("p", { class: "muted" }, "Describe a sample job; the matcher runs as POST /v1/match would, without recording a match."), form, result);
}
