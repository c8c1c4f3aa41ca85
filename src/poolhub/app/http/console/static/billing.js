// Billing: usage per tenant and resource over a period, split by delivery state; sync now; requeue
// rejected lines when the hub offers it; the coordinator's own metrics when it answers.
"use strict";

PH.pages.billing = async (view, args, query) => {
  const h = PH.h;
  const f = PH.fmt;
  const hours = Number(query.get("hours") || 24);
  const tenant = query.get("tenant_id") || "";
  const params = new URLSearchParams({ hours: String(hours) });
  if (tenant) params.set("tenant_id", tenant);
  const [summary, usage, sla] = await Promise.all([
    PH.api(`/console/api/billing?${params}`),
    PH.api(`/sla/billing/usage?${params}`),
    PH.api("/sla/status"),
  ]);
  const s = summary.body;

  const form = h(
    "form",
    { class: "filters", id: "billing-filters" },
    PH.field("Period", PH.select("hours", [["1", "last hour"], ["24", "last 24 h"], ["168", "last 7 days"], ["720", "last 30 days"]], String(hours))),
    PH.field("Tenant", h("input", { name: "tenant_id", value: tenant, pattern: "[A-Za-z0-9._:\\-]{1,64}", placeholder: "all tenants" })),
    h("button", { type: "submit" }, "Apply"),
  );
  const apply = () => {
    const q = new URLSearchParams();
    for (const el of form.elements) if (el.name && el.value) q.set(el.name, el.value);
    PH.go("billing", [], q);
  };
  form.addEventListener("submit", (e) => (e.preventDefault(), apply()));
  form.elements.hours.addEventListener("change", apply);

  const status = h("div", { id: "billing-action", "aria-live": "polite" });
  const syncButton = h("button", { type: "button", id: "sync-now" }, "Sync now");
  syncButton.addEventListener("click", async () => {
    syncButton.disabled = true;
    status.replaceChildren(PH.message("Sending pending lines to the coordinator…"));
    try {
      const r = (await PH.api("/sla/billing/sync", { method: "POST", body: {} })).body;
      const parts = [`Sent ${f.int(r.records_sent)} lines`, `${f.int(r.records_failed)} failed (kept pending)`, `${f.int(r.records_rejected)} rejected`, `${f.int(r.records_pending)} still pending`];
      sessionStorage.setItem("poolhub.lastSync", `${nowUtc()}: ${parts.join(", ")}.`);
      await PH.render();
    } catch (err) {
      status.replaceChildren(PH.message(`Sync failed: ${err.message}`, "bad"));
      syncButton.disabled = false;
    }
  });
  const actions = [syncButton];
  if (PH.features && PH.features.requeue) {
    const requeue = h("button", { type: "button", id: "requeue", class: "secondary" }, tenant ? `Requeue rejected lines of ${tenant}` : "Requeue rejected lines");
    requeue.addEventListener("click", async () => {
      requeue.disabled = true;
      try {
        const r = (await PH.api("/sla/billing/requeue", { method: "POST", body: tenant ? { tenant_id: tenant } : {} })).body;
        sessionStorage.setItem("poolhub.lastSync", `${nowUtc()}: ${f.int(r.records_requeued)} rejected lines back to pending.`);
        await PH.render();
      } catch (err) {
        status.replaceChildren(PH.message(`Requeue failed: ${err.message}`, "bad"));
        requeue.disabled = false;
      }
    });
    actions.push(requeue);
  }
  const last = sessionStorage.getItem("poolhub.lastSync");
  if (last) status.append(PH.message(`Last action from this tab: ${last}`, "ok"));
  // Builds that report it say whether delivery is blocked by the coordinator's configuration.
  const blocked = sla.body.billing_blocked;
  if (blocked) status.append(PH.message(`Billing is blocked: ${blocked}`, "bad"));
  else if (blocked === null) status.append(h("p", { id: "billing-blocked" }, PH.badge("delivery not blocked", "ok")));

  const totals = s.totals.length ? s.totals : [{ currency: "USD", pending_amount: "0", synced_amount: "0", rejected_amount: "0" }];
  view.append(
    h("div", { class: "page-head" }, h("h1", {}, "Billing"), h("p", { class: "updated" }, `${f.time(s.period_start)} → ${f.time(s.period_end)}`)),
    form,
    h(
      "div",
      { class: "cards" },
      ...totals.map((t) =>
        h(
          "section",
          { class: "card", id: `billing-totals-${t.currency}` },
          h("h2", {}, `Amounts (${t.currency})`),
          h(
            "div",
            { class: "stats" },
            h("div", { class: "stat" }, h("span", { class: "stat-value", id: "billing-pending" }, f.money(t.pending_amount, t.currency)), h("span", { class: "stat-label" }, "pending")),
            h("div", { class: "stat" }, h("span", { class: "stat-value", id: "billing-synced" }, f.money(t.synced_amount, t.currency)), h("span", { class: "stat-label" }, "synced")),
            h("div", { class: "stat" }, h("span", { class: "stat-value", id: "billing-rejected" }, f.money(t.rejected_amount, t.currency)), h("span", { class: "stat-label" }, "rejected")),
          ),
          h("p", { class: "muted" }, `Last line delivered: ${f.ago(s.last_synced_at)}.`),
        ),
      ),
      h("section", { class: "card" }, h("h2", {}, "Delivery"), h("div", { class: "actions" }, ...actions), status),
    ),
    h("h2", {}, "Usage by tenant and resource"),
    PH.table(
      [
        { label: "tenant", cell: (l) => l.tenant_id },
        { label: "resource", cell: (l) => l.resource_type.replaceAll("_", " ") },
        { label: "quantity", num: true, cell: (l) => `${f.qty(l.quantity)} ${l.unit}` },
        { label: "amount", num: true, cell: (l) => f.money(l.amount, l.currency) },
        { label: "pending", num: true, cell: (l) => f.money(l.pending_amount, l.currency) },
        { label: "synced", num: true, cell: (l) => f.money(l.synced_amount, l.currency) },
        { label: "rejected", num: true, cell: (l) => (Number(l.rejected_amount) ? PH.badge(f.money(l.rejected_amount, l.currency), "bad") : f.money(l.rejected_amount, l.currency)) },
        { label: "state", cell: (l) => lineState(l) },
      ],
      s.lines,
      { empty: "No usage in this period: completed jobs (POST /v1/feedback with outcome completed) and answered match requests become usage.", caption: "Ledger lines whose usage ended in the period" },
    ),
    coordinatorSection(usage.body.coordinator),
  );
};

const nowUtc = () => `${new Date().toISOString().slice(11, 19)} UTC`;

function lineState(l) {
  if (Number(l.rejected_quantity)) return PH.badge("has rejected", "bad");
  if (Number(l.pending_quantity)) return PH.badge("pending", "warn");
  return PH.badge("synced", "ok");
}

// The coordinator's answer is its own shape: show it as readable text, whatever it holds.
function plain(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "string" && /^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(value)) return PH.fmt.time(value);
  if (Array.isArray(value)) return value.length ? value.map(plain).join("; ") : "none";
  if (typeof value === "object") return Object.entries(value).map(([k, v]) => `${k.replaceAll("_", " ")}: ${plain(v)}`).join(", ");
  return String(value);
}

// A list of objects (the coordinator's per-tenant lines) reads best as a table of its first object's keys.
function rows(value) {
  if (!Array.isArray(value) || !value.length || typeof value[0] !== "object" || value[0] === null) return null;
  const keys = Object.keys(value[0]);
  return PH.table(
    keys.map((k) => ({ label: k.replaceAll("_", " "), cell: (r) => plain(r[k]) })),
    value,
  );
}

function coordinatorSection(coordinator) {
  const h = PH.h;
  const content = !coordinator
    ? PH.message("The coordinator's billing API did not answer (COORDINATOR_BILLING_URL): its own metrics are not shown.", "warn")
    : h(
        "dl",
        { class: "facts", id: "coordinator-metrics" },
        ...Object.entries(coordinator).flatMap(([k, v]) => [h("dt", {}, k.replaceAll("_", " ")), h("dd", {}, rows(v) || plain(v))]),
      );
  return h("section", { class: "card" }, h("h2", {}, "The coordinator's own billing metrics"), content);
}
