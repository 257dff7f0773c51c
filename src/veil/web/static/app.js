// Veil dashboard: fills each page from the node's JSON API (/v1, the same endpoints
// the CLI uses) with the bearer token the viewer logged in with. Nothing outside the node.
"use strict";
(function () {
  const body = document.body, page = body.dataset.page, JOB = body.dataset.job;
  const content = document.getElementById("content");
  const FINAL = ["succeeded", "failed", "rejected", "cancelled"];
  const KEY = "veil.token." + body.dataset.node;

  // ---- helpers ------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const k of kids.flat(Infinity)) if (k !== null && k !== undefined && k !== false)
      e.append(k instanceof Node ? k : String(k));
    return e;
  }
  class ApiError extends Error { constructor(status, msg) { super(msg); this.status = status; } }
  async function api(method, path, data) {
    const tok = sessionStorage.getItem(KEY);
    const headers = { Accept: "application/json" };
    if (tok) headers.Authorization = "Bearer " + tok;
    if (data !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch("/v1" + path, { method, headers, body: data === undefined ? undefined : JSON.stringify(data) });
    let out = null;
    try { out = await r.json(); } catch (e) { out = null; }
    if (r.status === 401 && page !== "login") {
      sessionStorage.removeItem(KEY);
      location.assign("/ui/login?next=" + encodeURIComponent(location.pathname));
    }
    if (!r.ok) throw new ApiError(r.status, (out && out.detail) || r.statusText);
    return out;
  }
  const get = (p) => api("GET", p);
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  function when(t) {
    if (t === null || t === undefined) return "–";
    const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
    const txt = d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" });
    return h("time", { datetime: d.toISOString(), title: d.toISOString() }, txt);
  }
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0, v = n;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(v >= 100 ? 0 : 1) : v) + " " + u[i];
  }
  function secs(v) {
    if (v === null || v === undefined) return "–";
    if (v < 60) return v.toFixed(v < 10 ? 2 : 1) + " s";
    const m = Math.floor(v / 60); return m + " min " + Math.round(v - 60 * m) + " s";
  }
  const count = (n, unit) => (n === null || n === undefined ? "–" : Number(n).toLocaleString() + " " + unit);
  const pct = (f) => (100 * f).toFixed(1) + " %";
  const badge = (state) => h("span", { class: "badge s-" + state, "data-state": state }, state);
  const table = (head, rows, cls) => h("table", { class: cls || "" },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col", class: /^(Rows|Seconds|Bytes|Progress|RTT|AUC|KS|Lift|Value|Size|Events|IV|Gain|Splits)/.test(c) ? "num" : "" }, c)))),
    h("tbody", {}, rows));
  function notice(msg, kind) {
    const n = document.getElementById("notice");
    if (!msg) { n.hidden = true; return; }
    n.hidden = false; n.className = "notice " + (kind || "error"); n.textContent = msg;
  }
  function fill(...kids) { content.replaceChildren(...kids.flat()); content.setAttribute("aria-busy", "false"); }
  function denied(e, what) {
    return h("p", { class: "error", "data-status": e.status },
      e.status === 403 ? `${what}: ${e.message} (HTTP 403)` : `${what}: ${e.message}`);
  }
  // Poll fn every ms while the page is open; errors show once in the notice.
  function poll(fn, ms) {
    let stop = false;
    const tick = async () => {
      if (stop) return;
      try { const again = await fn(); notice(null); if (again === false) return; }
      catch (e) {
        if (e.status !== 401) notice(e.status ? `${e.message} (HTTP ${e.status})` : e.message);
        if (e.status === 403 || e.status === 404) return;  // asking again will not help
      }
      setTimeout(tick, ms);
    };
    tick();
    return () => { stop = true; };
  }
  const kv = (pairs) => h("dl", { class: "kv" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const link = (href, text) => h("a", { href }, text);
  const params = (p) => Object.keys(p || {}).length ? Object.entries(p).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ") : "defaults";

  // ---- chrome: who am I, logout, time zone ----------------------------------
  let me = null;
  async function chrome() {
    const tzEl = document.getElementById("tz");
    if (tzEl) tzEl.textContent = "times in " + tz;
    const out = document.getElementById("logout");
    if (out) out.addEventListener("click", () => { sessionStorage.removeItem(KEY); location.assign("/ui/login"); });
    if (!sessionStorage.getItem(KEY)) { location.assign("/ui/login?next=" + encodeURIComponent(location.pathname)); return false; }
    me = await get("/whoami");
    document.getElementById("whoami").textContent = `role ${me.role}`;
    for (const a of document.querySelectorAll("nav a[data-need]")) {
      const need = a.dataset.need.split(" ");
      if (me.role !== "admin" && !need.includes(me.role)) { a.classList.add("off"); a.title = "needs role " + need.join(" or "); }
    }
    return true;
  }
  const can = (role) => me && (me.role === "admin" || me.role === role);

  // ---- pages ----------------------------------------------------------------
  const PAGES = {};

  PAGES.login = function () {
    const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true, size: 50, "aria-describedby": "tokhelp" });
    const err = h("p", { class: "error", hidden: true, role: "alert" });
    const form = h("form", { class: "card", onsubmit: async (ev) => {
      ev.preventDefault(); err.hidden = true;
      sessionStorage.setItem(KEY, input.value.trim());
      try {
        const who = await api("GET", "/whoami");
        const next = new URLSearchParams(location.search).get("next");
        location.assign(next && next.startsWith("/ui/") ? next : who.role === "auditor" ? "/ui/audit" : "/ui/jobs");
      } catch (e) { sessionStorage.removeItem(KEY); err.hidden = false; err.textContent = "Not accepted: " + e.message; }
    } },
      h("label", { for: "token" }, "API token"), h("br"), input,
      h("p", { id: "tokhelp", class: "muted small" }, "Issued by ", h("code", {}, "veil node token DIR --role operator|approver|auditor"),
        ". Kept only in this browser tab (session storage)."),
      h("button", { type: "submit", class: "primary" }, "Log in"), err);
    fill(form); input.focus();
  };

  PAGES.jobs = function () {
    const state = h("select", { id: "f-state" }, h("option", { value: "" }, "any"),
      ["proposed", "approved", "running", "succeeded", "failed", "rejected", "cancelled"].map((s) => h("option", { value: s }, s)));
    const text = h("input", { id: "f-text", type: "search", placeholder: "name, id or party" });
    const live = h("p", { class: "muted small", "aria-live": "polite" });
    const tbody = h("tbody", { id: "jobs" });
    let jobs = [];
    function render() {
      const q = text.value.trim().toLowerCase();
      const rows = jobs.filter((j) => (!state.value || j.state === state.value) &&
        (!q || [j.id, j.name, j.initiator].some((x) => x.toLowerCase().includes(q))));
      tbody.replaceChildren(...rows.map((j) => h("tr", { "data-job": j.id },
        h("td", {}, link("/ui/jobs/" + j.id, j.name), h("br"), h("code", { class: "small muted" }, j.id)),
        h("td", {}, j.initiator), h("td", {}, badge(j.state)),
        h("td", { class: "small" }, j.error || ""), h("td", {}, when(j.created)))));
      if (!rows.length) tbody.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, jobs.length ? "No job matches the filters." : "No jobs yet.")));
    }
    state.addEventListener("change", render); text.addEventListener("input", render);
    fill(h("div", { class: "filters", role: "search" }, h("label", {}, "State", state), h("label", {}, "Search", text), live),
      h("table", {}, h("thead", {}, h("tr", {}, ["Job", "From", "State", "Error", "Submitted"].map((c) => h("th", { scope: "col" }, c)))), tbody));
    poll(async () => { jobs = await get("/jobs"); render(); live.replaceChildren("Live: updated ", when(Date.now() / 1000)); }, 1000);
  };

  const HINTS = [
    [/node restarted|node stopped/, "A node stopped while the job ran. Start it again and resubmit the job."],
    [/cannot propose|not reachable|unreachable|silent/, "A partner's node could not be reached. Check that it runs and that the peer address and certificates are right."],
    [/rejected the job/, "A party said no. Read its reason, change the job file and submit it again."],
    [/hash mismatch/, "The parties hold different job files. Submit the job again from one node."],
    [/no dataset/, "A party names a dataset its node does not have. Register it with 'veil dataset add'."],
    [/cancelled by/, "Someone cancelled the job."],
  ];
  function failure(st, report) {
    if (!st.error) return null;
    const bad = st.steps.find((s) => s.state === "failed");
    const rsteps = (report && report.steps) || [];
    const rbad = rsteps.find((s) => s.status === "failed");
    // a party's failure reaches this node as an error naming the step ("in step 1 '_fail'",
    // counted from 0) before, or instead of, this node's own step record
    const said = /in step (\d+) '([^']+)'/.exec(st.error);
    const n = bad ? bad.index : rbad ? rsteps.indexOf(rbad) : said ? Number(said[1]) : null;
    const stepName = n === null ? "" : (st.steps[n] && st.steps[n].name) || (said ? said[2] : "?");
    const head = st.state === "failed" ? (n !== null ? `Step ${n + 1} of ${st.steps.length} (${stepName}) failed.` : "The job failed before any step ran.")
      : `The job was ${st.state}.`;
    const hint = HINTS.find(([re]) => re.test(st.error));
    return h("div", { class: "error", id: "failure", role: "alert" }, h("strong", {}, head), h("p", {}, st.error),
      rbad && rbad.error && rbad.error !== st.error ? h("p", {}, "Step error: ", rbad.error) : null,
      hint ? h("p", {}, "What to do: ", hint[1]) : null);
  }

  // Bytes this node exchanged with each peer, per step (the worker's report).
  function peerTraffic(report, me) {
    const rows = [];
    for (const s of (report && report.steps) || []) {
      const mine = (s.peer_traffic || {})[me] || {};
      for (const [peer, t] of Object.entries(mine))
        rows.push(h("tr", {}, h("td", {}, s.name), h("td", {}, peer),
          h("td", { class: "num" }, bytes(t.bytes_sent || 0)), h("td", { class: "num" }, bytes(t.bytes_received || 0))));
    }
    if (!rows.length) return "";
    return h("div", { id: "peer-traffic" }, h("h2", {}, "Bytes per peer (this node)"),
      table(["Step", "Peer", "Sent", "Received"], rows));
  }

  PAGES.job = function () {
    const top = h("div"), flow = h("ol", { class: "flow", "aria-label": "Steps" }), votes = h("div"),
      per = h("div"), logs = h("div"), extra = h("div"), fail = h("div", { "aria-live": "assertive" });
    fill(top, fail, h("h2", {}, "Steps"), flow, h("h2", {}, "Votes"), votes,
      h("h2", {}, "Seconds and bytes per party"), per, extra, h("h2", {}, "Events"), logs);
    let report = null, lastState = null;
    async function side(st) {
      if (can("operator")) {
        try { const r = await get(`/jobs/${JOB}/report`); report = r.report; } catch (e) { report = null; }
        try {
          const lg = await get(`/jobs/${JOB}/log`);
          const rl = report && report.logs ? Object.entries(report.logs).map(([p, l]) => `[${p}]\n` + [].concat(l).join("\n")).join("\n") : "";
          extra.replaceChildren(h("h2", {}, "Worker log (this node)"), h("pre", { tabindex: 0 }, (lg.log || "(empty)") + (rl ? "\n--- last lines of failed workers ---\n" + rl : "")));
        } catch (e) { extra.replaceChildren(); }
      }
      extra.prepend(peerTraffic(report, me && me.node));
      if (st.steps.some((s) => s.name === "evaluate") && st.state === "succeeded")
        top.append(h("p", {}, link(`/ui/jobs/${JOB}/model`, "Model report →")));
      fail.replaceChildren(failure(st, report) || "");
    }
    async function tick() {
      const st = await get(`/jobs/${JOB}`);
      top.replaceChildren(kv([["State", h("span", { id: "job-state" }, badge(st.state))], ["Name", st.name], ["Proposed by", st.initiator],
        ["Job file SHA-256", h("code", { class: "small" }, st.sha256)], ["Submitted", when(st.created)], ["Last change", when(st.updated)]]));
      flow.replaceChildren(...st.steps.flatMap((s, i) => [i ? h("li", { class: "arrow", "aria-hidden": "true" }, "→") : null,
        h("li", { class: "st-" + s.state, "data-step": s.index },
          h("strong", {}, `${s.index + 1}. ${s.name}`), " ", badge(s.state),
          h("progress", { max: 1, value: s.progress, "aria-label": `progress of step ${s.index + 1}` }),
          h("div", { class: "small" }, `${pct(s.progress)} · ${secs(s.seconds)} · ${bytes(s.bytes)} sent`))]).filter(Boolean));
      votes.replaceChildren(table(["Party", "Vote", "Reason"], Object.entries(st.parties).map(([p, v]) =>
        h("tr", {}, h("td", {}, p), h("td", {}, badge(v.vote)), h("td", {}, v.reason)))));
      const evs = await get(`/jobs/${JOB}/events`);
      logs.replaceChildren(table(["Time", "Event", "By", "Detail"], evs.slice().reverse().map((e) =>
        h("tr", {}, h("td", {}, when(e.at)), h("td", {}, e.kind), h("td", {}, e.actor), h("td", { class: "small" }, h("code", {}, JSON.stringify(e.detail)))))));
      if (st.state !== lastState || !FINAL.includes(st.state)) {
        try {
          const ps = await get(`/jobs/${JOB}/parties`);
          const rows = [];
          for (const [p, a] of Object.entries(ps)) {
            if (!a.ok) { rows.push(h("tr", {}, h("td", {}, p), h("td", { colspan: 4, class: "muted" }, "not available: " + a.error))); continue; }
            for (const s of a.status.steps) rows.push(h("tr", {}, h("td", {}, p), h("td", {}, `${s.index + 1}. ${s.name}`), h("td", {}, badge(s.state)),
              h("td", { class: "num" }, secs(s.seconds)), h("td", { class: "num" }, bytes(s.bytes))));
          }
          per.replaceChildren(table(["Party", "Step", "State", "Seconds", "Bytes sent"], rows));
        } catch (e) { per.replaceChildren(denied(e, "Per-party figures")); }
        if (FINAL.includes(st.state)) await side(st);
        else if (st.error) fail.replaceChildren(failure(st, null));
      }
      lastState = st.state;
      return !FINAL.includes(st.state) || undefined;
    }
    poll(async () => { const again = await tick(); return again ? true : false; }, 1000);
  };

  function proposalCard(p, done) {
    const d = p.decision;
    const card = h("section", { class: "card", "data-job": p.id, "aria-labelledby": "h-" + p.id });
    const reason = h("textarea", { rows: 2, cols: 50, "aria-label": "reason for rejecting " + p.name, placeholder: "Reason (required to reject)" });
    const msg = h("p", { "aria-live": "polite", class: "result" });
    const ok = can("approver");
    async function act(kind) {
      try {
        if (kind === "reject" && !reason.value.trim()) { msg.textContent = "Write a reason to reject."; reason.focus(); return; }
        const st = kind === "approve" ? await api("POST", `/jobs/${p.id}/approve`) : await api("POST", `/jobs/${p.id}/reject`, { reason: reason.value.trim() });
        card.querySelectorAll("button").forEach((b) => (b.disabled = true));
        const stateEl = h("span", { class: "job-now" }, badge(st.state));
        msg.replaceChildren(kind === "approve" ? "Approved. The job is now " : "Rejected. The job is now ", stateEl, " · ", link("/ui/jobs/" + p.id, "open the job"));
        poll(async () => { const s = await get(`/jobs/${p.id}`); stateEl.replaceChildren(badge(s.state)); return !FINAL.includes(s.state); }, 1000);
        if (done) done(p.id);
      } catch (e) { msg.textContent = `Not done: ${e.message}`; }
    }
    card.append(h("h2", { id: "h-" + p.id }, p.name, " ", h("span", { class: "muted small" }, "from " + p.initiator)),
      kv([["Job", link("/ui/jobs/" + p.id, p.id)], ["Job file SHA-256", h("code", { class: "small" }, p.sha256)],
        ["This node's policy", d.rule ? `approved by rule ${d.rule.rule}` : (d.policy || "–")]]),
      h("h3", {}, "Data each party gives"),
      table(["Party", "Dataset", "Columns used", "Id column", "Label"], Object.entries(p.parties).map(([name, x]) =>
        h("tr", {}, h("td", {}, name + (name === p.me ? " (this node)" : "")), h("td", {}, x.dataset),
          h("td", {}, x.columns ? x.columns.join(", ") + (x.rows ? ` · ${count(x.rows, "rows")}` : "") : h("span", { class: "muted" }, "known only to " + name)),
          h("td", {}, x.id || "–"), h("td", {}, x.label || "none")))),
      h("h3", {}, "Steps and who receives what"),
      table(["#", "Step", "Parameters", "Receives outputs"], p.steps.map((s) =>
        h("tr", {}, h("td", {}, s.index + 1), h("td", {}, s.kind), h("td", { class: "small" }, h("code", {}, params(s.params))),
          h("td", {}, s.receivers.length ? s.receivers.join(", ") : "only each party's own outputs")))),
      h("details", {}, h("summary", {}, "Job file as proposed"), h("pre", {}, p.text)),
      h("div", { class: "filters" }, reason,
        h("button", { type: "button", class: "primary", disabled: !ok, onclick: () => act("approve") }, "Approve"),
        h("button", { type: "button", class: "danger", disabled: !ok, onclick: () => act("reject") }, "Reject")),
      ...(ok ? [] : [h("p", { class: "muted small" }, "Approving needs the approver role.")]), msg);
    return card;
  }

  PAGES.approvals = function () {
    const queue = h("div", { id: "queue" }), auto = h("div"), acted = new Set(), shown = new Map(), cache = new Map();
    fill(h("h2", {}, "Waiting for this node's decision"), queue, h("h2", {}, "Decided by policy"), auto);
    poll(async () => {
      const jobs = (await get("/jobs")).slice(0, 50);
      const props = [];
      for (const j of jobs) {
        const hit = cache.get(j.id);
        if (hit && hit.state === j.state && FINAL.includes(j.state)) { props.push(hit); continue; }
        const p = await get(`/jobs/${j.id}/proposal`); cache.set(j.id, p); props.push(p);
      }
      const waiting = props.filter((p) => p.state === "proposed" && p.decision.vote === "pending");
      for (const p of waiting) if (!shown.has(p.id)) { const c = proposalCard(p, (id) => acted.add(id)); shown.set(p.id, c); }
      for (const [id, c] of shown) if (!acted.has(id) && !waiting.some((p) => p.id === id)) { shown.delete(id); }
      queue.replaceChildren(...(shown.size ? [...shown.values()] : [h("p", { class: "muted" }, "Nothing waits for a decision.")]));
      const byPolicy = props.filter((p) => p.decision.by_policy);
      auto.replaceChildren(byPolicy.length ? table(["Job", "From", "Rule", "Rule says", "State"], byPolicy.map((p) => {
        const r = p.decision.rule;
        return h("tr", {}, h("td", {}, link("/ui/jobs/" + p.id, p.name)), h("td", {}, p.initiator),
          h("td", {}, r ? "rule " + r.rule : "–"),
          h("td", { class: "small" }, r ? `partners ${r.partners.join(", ")}; steps ${r.steps.join(", ")}; datasets ${r.datasets.join(", ")}; columns ${r.columns ? r.columns.join(", ") : "any"}; recipients ${r.recipients ? r.recipients.join(", ") : "any party"}` : p.decision.policy || ""),
          h("td", {}, badge(p.state)));
      })) : h("p", { class: "muted" }, "No job was approved by policy."));
    }, 2000);
  };

  PAGES.datasets = async function () {
    let ds, rules;
    try { [ds, rules] = await Promise.all([get("/datasets"), get("/policy")]); }
    catch (e) { fill(denied(e, "Datasets")); return; }
    const uses = (name) => rules.filter((r) => r.datasets.includes(name));
    fill(ds.length ? ds.map((d) => h("section", { class: "card", "data-dataset": d.name },
      h("h2", {}, d.name),
      kv([["Rows", count(d.rows, "rows")], ["Format", d.format], ["Id column", d.id_col], ["Label column", d.label_col || "none"],
        ["Content SHA-256", h("code", { class: "small" }, d.sha256)], ["Registered", when(d.created)]]),
      h("details", {}, h("summary", {}, `Schema: ${d.columns.length} columns`),
        table(["Column", "Type"], d.columns.map((c, i) => h("tr", {}, h("td", {}, c), h("td", {}, d.dtypes[i] || "?"))))),
      h("h3", {}, "Which partners may use which columns (auto-approve rules)"),
      uses(d.name).length ? table(["Rule", "Partners", "Columns", "Steps", "Outputs to"], uses(d.name).map((r) => h("tr", {},
        h("td", {}, r.rule), h("td", {}, r.partners.join(", ")), h("td", {}, r.columns ? r.columns.join(", ") : "all columns"),
        h("td", {}, r.steps.join(", ")), h("td", {}, r.recipients ? r.recipients.join(", ") : "any party of the job"))))
        : h("p", { class: "muted" }, "No rule names this dataset: every job that uses it waits for an approver.")))
      : h("p", { class: "muted" }, "No datasets. Register one with 'veil dataset add'."));
  };

  PAGES.peers = function () {
    poll(async () => {
      const ps = await get("/peers");
      const now = Date.now();
      fill(ps.length ? table(["Peer", "Address", "Liveness", "RTT", "Last heard", "Certificate expires"], ps.map((p) => {
        let cert = h("span", { class: "muted" }, "not seen yet");
        if (p.cert_expires) {
          const days = (new Date(p.cert_expires).getTime() - now) / 86400000;
          const cls = days < 0 ? "expired" : days < 30 ? "warn" : "ok";
          cert = h("span", {}, when(p.cert_expires), " ", h("span", { class: "badge s-" + cls, "data-cert": cls },
            days < 0 ? "expired" : `${Math.floor(days)} days left` + (days < 30 ? " — renew now" : "")));
        }
        return h("tr", { "data-peer": p.name }, h("td", {}, p.name), h("td", {}, h("code", {}, p.address)),
          h("td", {}, badge(p.alive ? "alive" : "down"), p.error ? h("div", { class: "small muted" }, p.error) : null),
          h("td", { class: "num" }, p.rtt_ms === null ? "–" : p.rtt_ms.toFixed(1) + " ms"),
          h("td", { class: "num" }, p.last_seen_s === null || p.last_seen_s === undefined ? "–" : secs(p.last_seen_s) + " ago"), h("td", {}, cert));
      })) : h("p", { class: "muted" }, "This node has no peers."));
    }, 2000);
  };

  PAGES.model = async function () {
    let m;
    try { m = await get(`/jobs/${JOB}/model`); } catch (e) { fill(denied(e, "Model report")); return; }
    const C = window.VeilCharts, parts = [];
    parts.push(h("p", {}, `Party ${m.party} (this node) · `, link("/ui/jobs/" + JOB, "back to the job")));
    if (!m.label_holder) parts.push(h("p", { class: "warnbox" }, `Party ${m.party} does not hold the label: ROC, KS and lift stay with the label holder. This node shows only its own part.`));
    const sets = Object.entries(m.sets);
    if (sets.length) {
      parts.push(table(["Set", "Rows", "AUC", "KS", "KS threshold", "Confusion [[tn, fp], [fn, tp]]"], sets.map(([k, e]) =>
        h("tr", { "data-set": k }, h("td", {}, k), h("td", { class: "num" }, count(e.n, "rows")), h("td", { class: "num" }, e.auc.toFixed(4)),
          h("td", { class: "num" }, e.ks.toFixed(4)), h("td", { class: "num" }, e.ks_threshold.toFixed(4)), h("td", {}, JSON.stringify(e.confusion))))));
      if (m.psi_train_test !== null && m.psi_train_test !== undefined)
        parts.push(h("p", {}, `Population stability index, train vs test scores: ${m.psi_train_test.toFixed(4)} (under 0.1 reads as stable)`));
    }
    const grid = h("div", { class: "grid2" }); parts.push(grid);
    const box = (title, id) => { const d = h("div", { class: "card", id }); grid.append(d); d.append(h("h2", {}, title)); const c = h("div"); d.append(c); return c; };
    const curves = Object.entries(m.curves);
    if (curves.length) {
      C.line(box("ROC", "chart-roc"), { label: "ROC curve", xLabel: "False positive rate", yLabel: "True positive rate", xMax: 1, yMax: 1, diagonal: true,
        series: curves.map(([k, c]) => ({ name: `${k} (AUC ${m.sets[k] ? m.sets[k].auc.toFixed(3) : "?"})`, pts: c.roc,
          info: (p) => `FPR ${p[0].toFixed(3)}, TPR ${p[1].toFixed(3)} at score ≥ ${p[2].toFixed(3)}` })) });
      const main = m.curves.test ? "test" : curves[0][0], ks = m.curves[main].ks;
      let best = ks[0]; for (const p of ks) if (p[1] - p[2] > best[1] - best[2]) best = p;
      C.line(box(`KS (${main})`, "chart-ks"), { label: "KS curve", xLabel: "Share of population (highest scores first)", yLabel: "Cumulative share", xMax: 1, yMax: 1,
        marks: [{ x: best[0], y0: best[2], y1: best[1], label: `KS ${(best[1] - best[2]).toFixed(3)}` }],
        series: [{ name: "events", pts: ks.map((p) => [p[0], p[1], p[3]]), info: (p) => `top ${pct(p[0])}: ${pct(p[1])} of events (score ≥ ${p[2].toFixed(3)})` },
          { name: "non-events", pts: ks.map((p) => [p[0], p[2], p[3]]), info: (p) => `${pct(p[1])} of non-events` }] });
    }
    const mainSet = m.sets.test ? "test" : sets.length ? sets[0][0] : null;
    if (mainSet && m.sets[mainSet].deciles) {
      const dec = m.sets[mainSet].deciles;
      C.bars(box(`Lift by decile (${mainSet})`, "chart-lift"), { xLabel: "Lift (decile 1 = highest scores)", ref: 1,
        bars: dec.map((r) => ({ label: String(r.decile), value: r.lift, info: `lift ${r.lift.toFixed(2)}, ${r.events} of ${count(r.rows, "rows")} are events (${pct(r.event_rate)})` })) });
      C.line(box(`Cumulative gain (${mainSet})`, "chart-gain"), { label: "Gain chart", xLabel: "Deciles (share of population)", yLabel: "Share of events found", xMax: 1, yMax: 1, diagonal: true,
        series: [{ name: "model", pts: [[0, 0, 0], ...dec.map((r) => [r.decile / dec.length, r.cum_gain, r.cum_lift])],
          info: (p) => `top ${pct(p[0])}: ${pct(p[1])} of events, cumulative lift ${p[2].toFixed(2)}` }] });
    }
    const iv = Object.entries(m.iv || {}).sort((a, b) => b[1] - a[1]);
    if (iv.length) C.bars(box("Information value by feature", "chart-iv"), { horizontal: true, xLabel: "Information value", ref: 0.02,
      bars: iv.map(([k, v]) => ({ label: k, value: v, info: `IV ${v.toFixed(4)}` + (v < 0.02 ? " (weak)" : v > 0.3 ? " (strong)" : "") })) });
    const imp = Object.entries(m.importance || {}).map(([k, v]) => [k, typeof v === "number" ? { gain: v, split: null } : v]).sort((a, b) => b[1].gain - a[1].gain);
    if (imp.length) C.bars(box("Feature importance (this party's features)", "chart-importance"), { horizontal: true, xLabel: "Total split gain", color: "#862e9c",
      bars: imp.map(([k, v]) => ({ label: k, value: v.gain, info: `gain ${v.gain.toFixed(3)}` + (v.split !== null && v.split !== undefined ? `, ${v.split} splits` : "") })) });
    if (!sets.length && !imp.length) parts.push(h("p", { class: "muted" }, "This job left no evaluation for this node's party."));
    fill(parts);
  };

  PAGES.audit = function () {
    const status = h("div", { id: "verify", "aria-live": "polite" }), kind = h("input", { type: "search", placeholder: "event kind or job id" }), evs = h("div");
    let events = [];
    const render = () => {
      const q = kind.value.trim().toLowerCase();
      evs.replaceChildren(table(["Time", "Event", "Job", "By", "Detail"], events.filter((e) => !q || e.kind.includes(q) || (e.job_id || "").includes(q)).map((e) =>
        h("tr", {}, h("td", {}, when(e.at)), h("td", {}, e.kind), h("td", {}, e.job_id ? link("/ui/jobs/" + e.job_id, e.job_id) : "–"),
          h("td", {}, e.actor), h("td", { class: "small" }, h("code", {}, JSON.stringify(e.detail)))))));
    };
    kind.addEventListener("input", render);
    const again = h("button", { type: "button", onclick: () => verify() }, "Verify again");
    fill(h("h2", {}, "Verification"), status, again, h("h2", {}, "Event log (newest first)"), h("div", { class: "filters" }, h("label", {}, "Filter", kind)), evs);
    async function verify() {
      status.replaceChildren(h("p", { class: "muted" }, "Recomputing the log…"));
      try {
        const v = await get("/audit/verify");
        status.replaceChildren(v.ok
          ? h("p", { class: "okbox", "data-verified": v.verified_up_to }, `✔ Verified up to entry ${v.verified_up_to}`, h("span", { class: "small" }, ` · ${count(v.heads, "signed heads")}, ${count(v.witnessed, "witnessed")} · checked `, when(Date.now() / 1000)))
          : h("p", { class: "error", "data-failed": v.first_failure ? v.first_failure.seq : "" }, `✘ Entry ${v.first_failure && v.first_failure.seq !== null ? v.first_failure.seq : "(log)"} fails: [${v.first_failure.check}] ${v.first_failure.message}`),
          ...v.notes.map((n) => h("p", { class: "muted small" }, "Note: " + n)));
      } catch (e) { status.replaceChildren(denied(e, "Verification")); }
    }
    verify();
    poll(async () => { events = (await get("/events?limit=500")).reverse(); render(); }, 3000);
  };

  async function start() {
    if (page !== "login") {
      try { if (!(await chrome())) return; } catch (e) { if (e.status !== 401) fill(denied(e, "Login")); return; }
    }
    const fn = PAGES[page];
    if (fn) await fn();
  }
  start();
})();
