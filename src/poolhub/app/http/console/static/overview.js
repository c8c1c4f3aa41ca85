// Overview: the pool at a glance, refreshed every few seconds without reloading the page.
"use strict";

const OVERVIEW_REFRESH_MS = 4000;

PH.pages.overview = async (view) => {
  const h = PH.h;
  const stamp = h("p", { class: "updated", "aria-live": "off" });
  const body = h("div", { class: "cards", id: "overview" });
  view.append(
    h("div", { class: "page-head" }, h("h1", {}, "Overview"), stamp),
    body,
  );

  const refresh = async () => {
    const [overview, status, ready] = await Promise.all([
      PH.api("/console/api/overview"),
      PH.api("/sla/status"),
      PH.features && PH.features.readyz ? PH.api("/readyz", { raw: true }) : Promise.resolve(null),
    ]);
    let readiness = null;
    if (ready) {
      let reason = "";
      try {
        const payload = await ready.json();
        reason = payload.detail || payload.reason || "";
      } catch (_) {
        reason = "";
      }
      readiness = { ok: ready.ok, reason };
    }
    body.replaceChildren(...overviewCards(overview.body, status.body, readiness));
    stamp.textContent = `Live: updated ${new Date().toISOString().slice(11, 19)} UTC, every ${OVERVIEW_REFRESH_MS / 1000} s`;
  };
  await refresh();
  // The first look at the counters has nothing to compare with: look again soon, then every few seconds.
  PH.timers.push(setTimeout(() => refresh().catch(() => {}), 1200));
  PH.timers.push(
    setInterval(() => {
      refresh().catch((err) => {
        stamp.textContent = `Live update failed (${err.message}); retrying`;
      });
    }, OVERVIEW_REFRESH_MS),
  );
};

function overviewCards(o, status, readiness) {
  const h = PH.h;
  const f = PH.fmt;
  const card = (id, title, ...content) => h("section", { class: "card", id, "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, title), ...content);
  const stat = (id, value, label) => h("div", { class: "stat" }, h("span", { class: "stat-value", id }, value), h("span", { class: "stat-label" }, label));

  const cards = [];
  const miners = o.miners;
  cards.push(
    card(
      "ov-miners",
      "Miners",
      h("div", { class: "stats" }, stat("ov-online", f.int(miners.online), "online"), stat("ov-registered", f.int(miners.registered), "registered")),
      miners.registered === 0
        ? h("p", { class: "empty" }, "No miners yet: start some with ", h("code", {}, "poolhub simulate --url http://127.0.0.1:8210 --miners 20"), ".")
        : h("p", { class: "muted" }, `${f.int(miners.registered - miners.online)} offline (lease lapsed or logged out).`),
    ),
  );

  const slots = o.slots;
  const usedPct = slots.total ? (100 * slots.used) / slots.total : 0;
  cards.push(
    card(
      "ov-slots",
      "Slots of online miners",
      h("div", { class: "stats" }, stat("ov-free", f.int(slots.free), "free"), stat("ov-used", f.int(slots.used), "used"), stat("ov-total", f.int(slots.total), "total")),
      h("meter", { min: 0, max: 100, value: usedPct.toFixed(1), high: 80, optimum: 40, "aria-label": "share of slots in use" }),
      h("p", { class: "muted" }, `${f.pct(usedPct)} in use.`),
    ),
  );

  const m = o.matching;
  cards.push(
    card(
      "ov-matching",
      "Matching",
      h(
        "div",
        { class: "stats" },
        stat("ov-rate", m.rate_per_sec === null ? "…" : f.num(m.rate_per_sec, 2), "matches / s"),
        stat("ov-p99", m.p99_ms === null ? "—" : `${f.num(m.p99_ms, 2)} ms`, "p99 latency"),
        stat("ov-matches", f.int(m.requests_total), "answered"),
      ),
      h(
        "p",
        { class: "muted" },
        m.rate_per_sec === null
          ? "Measuring: the rate needs a second look at the counters."
          : `Over the last ${f.duration(m.window_sec)}, from this process's counters (in-process time to answer POST /v1/match).`,
      ),
    ),
  );

  const word = status.status;
  const violations = o.sla.open_violations;
  cards.push(
    card(
      "ov-sla",
      "SLA",
      h("p", { class: "big", id: "ov-sla-status" }, PH.badge(word, PH.STATUS_TONE[word])),
      h("p", {}, h("span", { id: "ov-violations" }, f.int(status.active_violations)), " open violations"),
      PH.table(
        [
          { label: "type", cell: (r) => PH.VIOLATION_WORDS[r.violation_type] || r.violation_type },
          { label: "severity", cell: (r) => PH.badge(r.severity, PH.SEVERITY_TONE[r.severity]) },
          { label: "open", num: true, cell: (r) => f.int(r.count) },
        ],
        violations,
        { empty: "No open violation: every measured miner is within its thresholds." },
      ),
      h("p", {}, h("a", { href: "#/violations" }, "All violations →")),
    ),
  );

  const billing = o.billing;
  const blocked = status.billing_blocked;
  const totals = billing.totals.length ? billing.totals : [{ currency: "USD", pending_amount: "0", synced_amount: "0", rejected_amount: "0" }];
  cards.push(
    card(
      "ov-billing",
      "Billing",
      ...totals.map((t) =>
        h(
          "div",
          { class: "stats" },
          stat("ov-pending", f.money(t.pending_amount, t.currency), "pending"),
          stat("ov-synced", f.money(t.synced_amount, t.currency), "synced"),
          stat("ov-rejected", f.money(t.rejected_amount, t.currency), "rejected"),
        ),
      ),
      blocked === undefined
        ? null
        : blocked
          ? h("p", { id: "ov-blocked" }, PH.badge("blocked", "bad"), ` ${blocked}`)
          : h("p", { id: "ov-blocked" }, PH.badge("not blocked", "ok")),
      h("p", { class: "muted" }, `Last line delivered: ${f.ago(billing.last_synced_at)}. Usage of the last ${billing.period_hours / 24} days.`),
      h("p", {}, h("a", { href: "#/billing" }, "Billing →")),
    ),
  );

  if (readiness) {
    cards.push(
      card(
        "ov-ready",
        "Readiness",
        h("p", {}, readiness.ok ? PH.badge("ready", "ok") : PH.badge("not ready", "bad"), readiness.ok ? "" : ` ${readiness.reason}`),
      ),
    );
  }
  return cards;
}
