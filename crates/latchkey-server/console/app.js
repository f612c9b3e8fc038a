// Latchkey console: a one-page app over Latchkey's own API. It signs in through the flows
// (POST /v1/sign-in, POST /v1/flows/{id}) like any app, then calls /admin/v1/… with the session's
// access token in the Authorization header (never a cookie: a cross-site request carries no
// credential). Every piece of data is put in the page as text (textContent), never as markup.

const main = document.getElementById("main");
const statusBox = document.getElementById("status");
const store = window.sessionStorage;
const session = {
  get access() { return store.getItem("lk.access"); },
  get refresh() { return store.getItem("lk.refresh"); },
  set(tokens) { store.setItem("lk.access", tokens.access_token); store.setItem("lk.refresh", tokens.refresh_token); },
  clear() { store.removeItem("lk.access"); store.removeItem("lk.refresh"); store.removeItem("lk.who"); },
};

// ---- DOM ----------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function page(title, ...content) {
  document.title = `${title} · Latchkey console`;
  main.replaceChildren(h("h1", {}, title), ...content);
  main.focus();
}

function say(text, isError) {
  statusBox.className = isError ? "error" : "";
  statusBox.textContent = text;
  if (!isError) setTimeout(() => { if (statusBox.textContent === text) statusBox.textContent = ""; }, 6000);
}

function table(columns, rows, caption) {
  return h("table", {},
    caption ? h("caption", { class: "note" }, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c ?? "—"))))
      : h("tr", {}, h("td", { colspan: columns.length }, "Nothing here."))));
}

function when(t) { return t ? t.replace("T", " ").replace(/(\.\d+)?Z$/, " UTC") : "never"; }

function confirmAction(title, text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    dialog.querySelector("button[value=cancel]").focus();
  });
}

// ---- API ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code || "error";
  }
}

async function call(method, path, body, retried) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (session.access) headers["Authorization"] = `Bearer ${session.access}`;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "omit" });
  const text = await r.text();
  const json = text ? JSON.parse(text) : null;
  if (r.status === 401 && json?.error?.code === "unauthenticated" && session.refresh && !retried) {
    const t = await fetch("/v1/token", { method: "POST", headers: { "Content-Type": "application/json" }, credentials: "omit",
      body: JSON.stringify({ grant_type: "refresh_token", refresh_token: session.refresh }) });
    if (t.ok) { session.set(await t.json()); return call(method, path, body, true); }
    session.clear();
  }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

const q = (params) => {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") s.set(k, v);
  const text = s.toString();
  return text ? `?${text}` : "";
};

// ---- Routing ------------------------------------------------------------------------------

function go(path) { history.pushState({}, "", path); route(); }

document.addEventListener("click", (e) => {
  const a = e.target.closest("a");
  if (a && a.origin === location.origin && a.pathname.startsWith("/console") && !e.ctrlKey && !e.metaKey && !e.shiftKey) {
    e.preventDefault();
    go(a.pathname + a.search);
  }
});
window.addEventListener("popstate", route);

document.getElementById("sign-out").addEventListener("click", async () => {
  try { await call("POST", "/v1/sign-out", { scope: "session" }); } catch { /* signed out either way */ }
  session.clear();
  go("/console");
});

async function route() {
  const path = location.pathname.replace(/\/+$/, "");
  const nav = document.getElementById("nav");
  for (const a of nav.querySelectorAll("a")) {
    if (path.startsWith(a.pathname)) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (path === "/console/invite") { nav.hidden = true; return invitePage(); }
  if (!session.access) { nav.hidden = true; return signInPage(); }
  nav.hidden = false;
  document.getElementById("who").textContent = store.getItem("lk.who") ? `Signed in as ${store.getItem("lk.who")}` : "";
  try {
    if (path === "/console" || path === "/console/users") return await usersPage();
    if (path.startsWith("/console/users/")) return await userPage(decodeURIComponent(path.slice("/console/users/".length)));
    if (path === "/console/funnel") return await funnelPage();
    if (path === "/console/delivery") return await deliveryPage();
    if (path === "/console/risk") return await riskPage();
    if (path === "/console/audit") return await auditPage();
    page("Not found", h("p", {}, "There is no such page. ", h("a", { href: "/console/users" }, "Go to the users.")));
  } catch (e) {
    return refused(e);
  }
}

function refused(e) {
  if (e.status === 401 && e.code === "insufficient_user_authentication") return needSecondFactor();
  if (e.status === 401) { session.clear(); return route(); }
  if (e.status === 403) {
    return page("Not an admin", h("p", {}, "This account has no admin role. Ask an admin to grant one (latchkey admin users role NAME admin)."));
  }
  page("Something went wrong", h("p", { class: "error" }, `${e.code}: ${e.message}`));
}

// ---- Signing in: Latchkey's own flow, step by step -----------------------------------------

function signInPage(error) {
  const username = h("input", { name: "username", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { onsubmit: async (e) => {
    e.preventDefault();
    try {
      const a = await call("POST", "/v1/sign-in", { username: username.value, password: password.value });
      store.setItem("lk.who", username.value);
      step(a);
    } catch (err) { signInPage(err.code === "not_authorized" ? "Wrong username or password." : `${err.code}: ${err.message}`); }
  } },
  h("label", {}, "Username", username), h("label", {}, "Password", password), h("button", { type: "submit" }, "Sign in"));
  page("Sign in", h("div", { class: "card" }, error ? h("p", { class: "error", role: "alert" }, error) : null, form,
    h("p", { class: "note" }, "Admins sign in with a password and a second factor (aal2).")));
  username.focus();
}

function codeForm(label, onCode, extra) {
  const code = h("input", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true, pattern: "[0-9]{6}", maxlength: 6 });
  const form = h("form", { onsubmit: (e) => { e.preventDefault(); onCode(code.value.trim()); } },
    h("label", {}, label, code), h("button", { type: "submit" }, "Continue"));
  return [extra, form, () => code.focus()];
}

async function answer(flowId, body) {
  try { step(await call("POST", `/v1/flows/${encodeURIComponent(flowId)}`, body)); } catch (e) { signInPage(`${e.code}: ${e.message}`); }
}

function step(a, afterDone) {
  const s = a.next_step;
  const problem = a.error ? h("p", { class: "error", role: "alert" }, a.error.message) : null;
  if (s.type === "done") {
    if (a.tokens) session.set(a.tokens);
    return afterDone ? afterDone() : go("/console/users");
  }
  if (s.type === "select_mfa") {
    const preferred = ["totp", "push_approval", "sms", "email", "recovery_code"].filter((m) => s.methods.includes(m));
    return page("Choose a second factor", problem, h("div", { class: "actions" }, preferred.map((m) =>
      h("button", { type: "button", onclick: () => answer(a.flow_id, { step: "select_mfa", method: m }) }, m.replace("_", " ")))));
  }
  const codeSteps = { totp_code: "Code from your authenticator app", sms_code: "Code sent by text message", email_code: "Code sent by email", recovery_code: "A recovery code" };
  if (codeSteps[s.type]) {
    const [, form, focus] = codeForm(codeSteps[s.type], (code) => answer(a.flow_id, { step: s.type, code }));
    page("Second factor", problem, h("div", { class: "card" }, form));
    return focus();
  }
  if (s.type === "push_approval") {
    page("Approve on your phone", problem, h("p", {}, `Open the app on your phone and approve: number ${s.number ?? ""}.`));
    return call("GET", `/v1/flows/${encodeURIComponent(a.flow_id)}?wait=25`).then((n) => step(n, afterDone)).catch((e) => signInPage(e.message));
  }
  if (s.type === "new_password") {
    const pw = h("input", { type: "password", autocomplete: "new-password", required: true, minlength: 8 });
    page("Choose a new password", problem, h("div", { class: "card" }, h("form", { onsubmit: (e) => {
      e.preventDefault(); answer(a.flow_id, { step: "new_password", password: pw.value });
    } }, h("label", {}, "New password (at least 8 characters)", pw), h("button", { type: "submit" }, "Save"))));
    return pw.focus();
  }
  if (s.type === "setup_totp") return totpSetup(a, problem, afterDone);
  if (s.type === "save_recovery_codes") {
    return page("Save your recovery codes", h("p", {}, "Each works once, if you lose your authenticator. They are shown only now."),
      h("ul", {}, s.codes.map((c) => h("li", {}, h("code", {}, c)))),
      h("button", { type: "button", onclick: () => { answerThen(a.flow_id, { step: "save_recovery_codes" }, afterDone); } }, "I saved them"));
  }
  page("Not supported here", h("p", {}, `The console cannot answer the step ${s.type}. Use the app.`));
}

async function answerThen(flowId, body, afterDone) {
  try { step(await call("POST", `/v1/flows/${encodeURIComponent(flowId)}`, body), afterDone); } catch (e) { say(e.message, true); }
}

function totpSetup(a, problem, afterDone) {
  const s = a.next_step;
  const qr = h("img", { class: "qr", alt: "QR code of the authenticator secret", src: `data:image/svg+xml;base64,${btoa(s.qr_svg)}` });
  const [, form, focus] = codeForm("The code your app shows now", (code) => answerThen(a.flow_id, { step: "setup_totp", code }, afterDone));
  page("Set up an authenticator app", problem,
    h("p", {}, "Scan the code with your authenticator app, or type in the secret."), qr,
    h("p", {}, "Secret: ", h("code", { class: "secret" }, s.secret)), h("div", { class: "card" }, form));
  focus();
}

async function needSecondFactor() {
  document.getElementById("nav").hidden = true;
  let factors = [];
  try { factors = (await call("GET", "/v1/me/factors")).factors || []; } catch { session.clear(); return signInPage(); }
  const strong = factors.some((f) => f.state === "active" && f.type !== "recovery_codes");
  const again = h("button", { type: "button", class: "secondary", onclick: () => { session.clear(); go("/console"); } }, "Sign in again");
  if (strong) {
    return page("Sign in again", h("p", {}, "The console needs a sign-in with your second factor within the last hours (aal2)."), again);
  }
  page("Add a second factor", h("p", {}, "Admins use the console with a second factor. Set up an authenticator app, then sign in again with it."),
    h("div", { class: "actions" }, h("button", { type: "button", onclick: async () => {
      try {
        const a = await call("POST", "/v1/me/factors", { type: "totp" });
        step(a, () => page("Authenticator added", h("p", {}, "Now sign in again with a code from it."), again));
      } catch (e) { say(`${e.code}: ${e.message}`, true); }
    } }, "Set up an authenticator app"), again));
}

// ---- An invitation: confirm the code, choose a password -----------------------------------

async function invitePage() {
  const params = new URLSearchParams(location.hash.slice(1));
  const flowId = params.get("flow_id");
  const code = params.get("code");
  if (!flowId || !code) return page("Invitation", h("p", { class: "error" }, "This invitation link is incomplete. Open the link from the message again."));
  const pw = h("input", { type: "password", autocomplete: "new-password", required: true, minlength: 8 });
  page("Accept your invitation", h("div", { class: "card" }, h("form", { onsubmit: async (e) => {
    e.preventDefault();
    try {
      let a = await call("GET", `/v1/flows/${encodeURIComponent(flowId)}`);
      if (a.next_step.type === "confirm_sign_up") {
        a = await call("POST", `/v1/flows/${encodeURIComponent(flowId)}`, { step: "confirm_sign_up", code });
        if (a.error) throw new Error(a.error.message);
      }
      a = await call("POST", `/v1/flows/${encodeURIComponent(flowId)}`, { step: "new_password", password: pw.value });
      if (a.error) { say(a.error.message, true); return; }
      history.replaceState({}, "", "/console/invite");
      page("Your account is ready", h("p", {}, "Your password is set. Sign in to the app, or ", h("a", { href: "/console" }, "to the console"), " if you are an admin."));
    } catch (err) { say(`The invitation could not be accepted: ${err.message}`, true); }
  } }, h("label", {}, "Choose a password (at least 8 characters)", pw), h("button", { type: "submit" }, "Accept"))));
  pw.focus();
}

// ---- Users --------------------------------------------------------------------------------

async function usersPage() {
  const params = new URLSearchParams(location.search);
  const query = h("input", { name: "query", value: params.get("query") || "", type: "search" });
  const status = h("select", { name: "status" }, ["", "active", "unconfirmed", "locked", "disabled"].map((s) =>
    h("option", { value: s, selected: params.get("status") === s }, s || "any")));
  const factor = h("select", { name: "factor" }, ["", "totp", "sms", "email", "recovery_codes", "device", "none"].map((s) =>
    h("option", { value: s, selected: params.get("factor") === s }, s || "any")));
  const form = h("form", { class: "inline", role: "search", onsubmit: (e) => {
    e.preventDefault(); go(`/console/users${q({ query: query.value.trim(), status: status.value, factor: factor.value })}`);
  } }, h("label", {}, "Username, email or phone starts with", query), h("label", {}, "Status", status),
    h("label", {}, "Second factor", factor), h("button", { type: "submit" }, "Search"),
    h("button", { type: "button", class: "secondary", onclick: () => invite() }, "Invite someone"));
  const body = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show more");
  const filters = { query: params.get("query"), status: params.get("status"), factor: params.get("factor") };
  const load = async (cursor) => {
    const list = await call("GET", `/admin/v1/users${q({ ...filters, cursor, limit: 50 })}`);
    for (const u of list.users) {
      body.append(h("tr", {}, h("td", {}, h("a", { href: `/console/users/${encodeURIComponent(u.username)}` }, u.username)),
        h("td", {}, u.email ?? "—"), h("td", {}, u.phone ?? "—"), h("td", {}, u.status),
        h("td", {}, u.factors.join(", ") || "none"), h("td", {}, String(u.devices)), h("td", {}, when(u.last_seen_at)), h("td", {}, when(u.created_at))));
    }
    if (!body.children.length) body.append(h("tr", {}, h("td", { colspan: 8 }, "No account matches.")));
    more.hidden = !list.next_cursor;
    more.onclick = () => load(list.next_cursor).catch(refused);
  };
  await load();
  page("Users", form, h("table", {}, h("thead", {}, h("tr", {}, ["Username", "Email", "Phone", "Status", "Second factors", "Devices", "Last seen", "Created"].map((c) => h("th", { scope: "col" }, c)))), body), more);
}

async function invite() {
  const username = h("input", { required: true, autocomplete: "off" });
  const email = h("input", { type: "email", autocomplete: "off" });
  const role = h("select", {}, [["", "no admin role"], ["admin", "admin"], ["read_only", "read only"]].map(([v, t]) => h("option", { value: v }, t)));
  page("Invite someone", h("div", { class: "card" }, h("form", { onsubmit: async (e) => {
    e.preventDefault();
    try {
      const r = await call("POST", "/admin/v1/users", { username: username.value, email: email.value || null, role: role.value || null });
      say(`Invitation sent to ${r.destination}.`);
      go(`/console/users/${encodeURIComponent(username.value)}`);
    } catch (err) { say(`${err.code}: ${err.message}`, true); }
  } }, h("label", {}, "Username", username), h("label", {}, "Email", email), h("label", {}, "Admin role", role), h("button", { type: "submit" }, "Send the invitation"))));
  username.focus();
}

async function act(title, text, method, path, body, done) {
  if (!(await confirmAction(title, text))) return;
  try { await call(method, path, body); say(done); } catch (e) { say(`${e.code}: ${e.message}`, true); return; }
  route();
}

async function userPage(username) {
  const u = await call("GET", `/admin/v1/users/${encodeURIComponent(username)}`);
  const base = `/admin/v1/users/${encodeURIComponent(u.username)}`;
  const facts = h("dl", { class: "facts" }, [["Status", u.status], ["Email", `${u.email ?? "—"}${u.email_verified ? " (verified)" : ""}`],
    ["Phone", `${u.phone ?? "—"}${u.phone_verified ? " (verified)" : ""}`], ["Name", u.name ?? "—"], ["Locale", u.locale ?? "—"],
    ["Admin role", u.admin_role ?? "none"], ["Must change password", u.must_change_password ? "yes" : "no"], ["Created", when(u.created_at)], ["Id", u.id]]
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const name = u.username;
  const actions = h("div", { class: "actions" },
    u.status === "disabled"
      ? h("button", { type: "button", onclick: () => act(`Enable ${name}?`, "The account can sign in again.", "POST", `${base}/enable`, undefined, `${name} enabled.`) }, "Enable")
      : h("button", { type: "button", class: "danger", onclick: () => act(`Disable ${name}?`, "The account cannot sign in and every session ends.", "POST", `${base}/disable`, undefined, `${name} disabled.`) }, "Disable"),
    h("button", { type: "button", class: "secondary", onclick: () => act(`Unlock ${name}?`, "The password and second-factor lockouts are cleared.", "POST", `${base}/unlock`, undefined, `${name} unlocked.`) }, "Unlock"),
    h("button", { type: "button", class: "secondary", onclick: () => act(`Require a new password from ${name}?`, "The next sign-in must choose a new password.", "POST", `${base}/require-password-change`, undefined, "Done.") }, "Require a password change"),
    h("button", { type: "button", class: "secondary", onclick: () => act(`End every session of ${name}?`, "Every app signed in as this account is signed out.", "DELETE", `${base}/sessions`, undefined, "Sessions ended.") }, "End all sessions"),
    h("button", { type: "button", class: "danger", onclick: async () => {
      if (!(await confirmAction(`Delete ${name}?`, "The account and its personal data are erased for good. This cannot be undone."))) return;
      try { await call("DELETE", base); say(`${name} deleted.`); go("/console/users"); } catch (e) { say(`${e.code}: ${e.message}`, true); }
    } }, "Delete the account"));
  const factors = table(["Type", "State", "Added", "Last used", "Action"], u.factors.factors.map((f) => [f.type, f.state, when(f.created_at), when(f.last_used_at),
    h("button", { type: "button", class: "secondary", "aria-label": `Reset the ${f.type} factor`, onclick: () => act(`Reset ${name}'s ${f.type}?`, "The factor is removed; the user is told and sets one up again.", "DELETE", `${base}/factors/${f.id}`, undefined, "Factor reset.") }, "Reset")]));
  const devices = table(["Name", "Platform", "Enrolled", "Last used", "Action"], u.devices.devices.map((d) => [d.name, d.platform, when(d.created_at), when(d.last_used_at),
    h("button", { type: "button", class: "secondary", "aria-label": `Revoke the device ${d.name}`, onclick: () => act(`Revoke ${d.name}?`, "The device can no longer sign in and its sessions end. The user is told.", "DELETE", `${base}/devices/${d.id}`, undefined, "Device revoked.") }, "Revoke")]));
  const sessions = table(["Started", "Level", "Methods", "IP", "User agent"], u.sessions.sessions.map((s) => [when(s.created_at), s.acr, (s.amr || []).join(", "), s.ip, s.user_agent]));
  const events = table(["When", "What", "Outcome", "IP"], u.recent_events.map((e) => [when(e.at), e.kind, e.outcome, e.ip]));
  page(`User ${u.username}`, facts, actions, h("h2", {}, "Second factors"), factors, h("h2", {}, "Devices"), devices,
    h("h2", {}, "Sessions"), sessions, h("h2", {}, "Timeline"), events);
}

// ---- The funnel, delivery, risk, audit ----------------------------------------------------

// The funnel's series: passwords accepted (with or without a second step to come), refusals
// (wrong passwords or codes, lockouts, denials), second factors verified, device sign-ins.
const CODE_STEP = /^(totp|sms|email|recovery)_code$|^push_approval$/;
const SERIES = [
  ["Passwords accepted", (p) => p.step === "sign_in" && (p.outcome === "success" || p.outcome === "needs_second_factor")],
  ["Refused", (p) => (p.step === "sign_in" || CODE_STEP.test(p.step) || p.step === "device_signature") && ["failure", "locked", "denied"].includes(p.outcome)],
  ["Second factors verified", (p) => CODE_STEP.test(p.step) && p.outcome === "success"],
  ["Device sign-ins", (p) => p.step === "device_signature" && p.outcome === "success"],
];

function chart(funnel, days) {
  const byDay = new Map(days.map((d) => [d, SERIES.map(() => 0)]));
  for (const p of funnel) {
    const row = byDay.get(p.day);
    if (row) SERIES.forEach(([, test], i) => { if (test(p)) row[i] += p.count; });
  }
  const max = Math.max(1, ...[...byDay.values()].flat());
  const W = 720, H = 240, left = 36, bottom = 24, slot = (W - left) / days.length, bar = Math.max(1, slot / (SERIES.length + 1));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  const total = SERIES.map((_, i) => [...byDay.values()].reduce((n, r) => n + r[i], 0));
  svg.setAttribute("aria-label", `Sign-ins per day over ${days.length} days: ${SERIES.map(([n], i) => `${n} ${total[i]}`).join(", ")}. The table below has every figure.`);
  const el = (tag, attrs, text) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text) e.textContent = text; svg.append(e); return e; };
  el("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, stroke: "#767676" });
  el("text", { x: 0, y: 12 }, String(max));
  el("text", { x: 0, y: H - bottom }, "0");
  days.forEach((d, di) => {
    byDay.get(d).forEach((n, si) => {
      const hgt = ((H - bottom - 16) * n) / max;
      el("rect", { x: left + di * slot + si * bar, y: H - bottom - hgt, width: Math.max(1, bar - 1), height: hgt, class: `bar s${si}`, fill: ["#0b4f9c", "#a4161a", "#1b7a3a", "#b35900"][si] });
    });
    if (di % Math.ceil(days.length / 8) === 0) el("text", { x: left + di * slot, y: H - 6 }, d.slice(5));
  });
  return svg;
}

async function funnelPage() {
  const days = Number(new URLSearchParams(location.search).get("days") || 30);
  const s = await call("GET", `/admin/v1/summary${q({ days })}`);
  const start = new Date(s.since);
  const dayList = [...Array(days).keys()].map((i) => new Date(start.getTime() + i * 86400000).toISOString().slice(0, 10));
  const totals = new Map();
  for (const p of s.funnel) totals.set(`${p.step}\u0000${p.outcome}`, (totals.get(`${p.step}\u0000${p.outcome}`) || 0) + p.count);
  const picker = h("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); go(`/console/funnel?days=${e.target.days.value}`); } },
    h("label", {}, "Days", h("select", { name: "days" }, [7, 30, 90, 366].map((d) => h("option", { value: d, selected: d === days }, d)))), h("button", { type: "submit" }, "Show"));
  page("Sign-in funnel", picker,
    h("p", {}, `${s.users} accounts; ${Object.entries(s.users_by_factor).map(([k, v]) => `${k} ${v}`).join(", ") || "no second factors"}; ${s.users_without_factor} without a second factor.`),
    chart(s.funnel, dayList),
    h("ul", { class: "legend" }, SERIES.map(([n], i) => h("li", {}, h("span", { class: `swatch s${i}`, "aria-hidden": "true" }), n))),
    h("h2", {}, "Every step and outcome"),
    table(["Step", "Outcome", "Count"], [...totals.entries()].sort().map(([k, n]) => [...k.split("\u0000"), String(n)])));
}

async function deliveryPage() {
  const [s, dead] = await Promise.all([call("GET", "/admin/v1/summary?days=7"), call("GET", "/admin/v1/outbox?status=dead&limit=50")]);
  page("Delivery",
    h("h2", {}, "The last 7 days, per provider"),
    table(["Provider", "Status", "Messages", "Needed a retry"], s.delivery.map((d) => [d.provider, d.status, String(d.count), String(d.retried)])),
    h("h2", {}, "Waiting now (outbox depth)"),
    table(["Provider", "Status", "Messages"], s.outbox_depth.map((d) => [d.provider, d.status, String(d.count)])),
    h("h2", {}, "Dead messages"),
    table(["Queued", "Channel", "Provider", "To", "Attempts", "Last error", "Action"], dead.messages.map((m) => [when(m.created_at), m.channel, m.provider, m.recipient || "(erased)", String(m.attempts), m.last_error,
      h("button", { type: "button", class: "secondary", "aria-label": `Send the message ${m.id} again`, onclick: () => act("Send again?", "The message is queued again from its first attempt. A code in it may have expired.", "POST", `/admin/v1/outbox/${m.id}/requeue`, undefined, "Queued again.") }, "Send again")])));
}

async function riskPage() {
  const [risk, locked] = await Promise.all([call("GET", "/admin/v1/audit?kind=risk&limit=50"), call("GET", "/admin/v1/audit?outcome=locked&limit=50")]);
  const user = (id) => id ?? "—";
  page("Risk and lockouts",
    h("h2", {}, "Recent risk decisions"),
    table(["When", "Decision", "Reasons", "Account", "IP"], risk.events.map((e) => [when(e.at), e.outcome, (e.detail.reasons || []).join(", "), user(e.user_id), e.ip])),
    h("h2", {}, "Recent lockouts"),
    table(["When", "Step", "Account", "IP"], locked.events.map((e) => [when(e.at), e.kind, user(e.user_id), e.ip])));
}

async function auditPage() {
  const params = new URLSearchParams(location.search);
  const fields = ["user", "kind", "outcome", "since", "until"];
  const inputs = Object.fromEntries(fields.map((f) => [f, h("input", { name: f, value: params.get(f) || "" })]));
  const labels = { user: "Account (username or id)", kind: "Kind", outcome: "Outcome", since: "Since (RFC 3339)", until: "Until (RFC 3339)" };
  const form = h("form", { class: "inline", role: "search", onsubmit: (e) => {
    e.preventDefault(); go(`/console/audit${q(Object.fromEntries(fields.map((f) => [f, inputs[f].value.trim()])))}`);
  } }, fields.map((f) => h("label", {}, labels[f], inputs[f])), h("button", { type: "submit" }, "Filter"));
  const body = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show more");
  const load = async (cursor) => {
    const list = await call("GET", `/admin/v1/audit${q({ ...Object.fromEntries(fields.map((f) => [f, params.get(f)])), cursor, limit: 50 })}`);
    for (const e of list.events) {
      body.append(h("tr", {}, [when(e.at), e.kind, e.outcome, e.user_id ?? "—", e.ip ?? "—", JSON.stringify(e.detail)].map((c) => h("td", {}, c))));
    }
    if (!body.children.length) body.append(h("tr", {}, h("td", { colspan: 6 }, "No event matches.")));
    more.hidden = !list.next_cursor;
    more.onclick = () => load(list.next_cursor).catch(refused);
  };
  await load();
  page("Audit log", form, h("table", {}, h("thead", {}, h("tr", {}, ["When", "Kind", "Outcome", "Account", "IP", "Detail"].map((c) => h("th", { scope: "col" }, c)))), body), more);
}

route();
