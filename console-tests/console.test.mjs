// The console in a real browser: Debian's headless Chromium driven by playwright-core, every page
// checked by axe-core. Starts the real binary on a free port with a fresh data directory.
//
//   An admin is invited with the CLI, accepts the invitation on the console's page, signs in,
//   sets up an authenticator app when the console asks for a second factor, signs in again with
//   TOTP, finds a user, revokes the user's device, sees the funnel chart, and visits delivery,
//   risk and the audit log. No page may have a serious or critical axe violation, nor break the
//   Content-Security-Policy. With SCREENSHOTS=dir, each page is saved there (docs/console/);
//   page weights and load times are printed as JSON (docs/admin.md quotes them).
import { chromium } from "playwright-core";
import { spawn, execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const require = createRequire(import.meta.url);
const AXE = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const BIN = path.resolve(process.env.BIN || "target/debug/latchkey");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.SCREENSHOTS ? path.resolve(process.env.SCREENSHOTS) : null;
const TOKEN = "console-test-admin-token-0123456789abcdef";
const PW = "correct horse battery";
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "latchkey-console-"));
const cli = (...args) => execFileSync(BIN, args, { cwd: dir, env: { ...process.env, LATCHKEY_ADMIN_TOKEN: TOKEN }, encoding: "utf8" });
const totp = (secret, offset = 0) => cli("totp", secret, "--at", String(Math.floor(Date.now() / 1000) + offset)).trim();

function start() {
  const child = spawn(BIN, ["serve", "--listen", "127.0.0.1:0"], {
    cwd: dir, env: { ...process.env, LATCHKEY_ADMIN_TOKEN: TOKEN }, stdio: ["ignore", "ignore", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let buffered = "";
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${buffered}`)), 30000);
    child.stderr.on("data", (chunk) => {
      buffered += chunk;
      for (const line of buffered.split("\n")) {
        let url = line.startsWith("latchkey: listening on ") ? line.slice(23).trim() : null;
        try { const v = JSON.parse(line); if (v.message === "listening") url = v.url; } catch { /* a plain line */ }
        if (url) { clearTimeout(timer); child.stderr.removeAllListeners("data"); child.stderr.resume(); resolve({ child, url }); return; }
      }
    });
    child.on("exit", (code) => reject(new Error(`serve exited ${code}: ${buffered}`)));
  });
}

const { child: server, url } = await start();
// A fresh profile each run (playwright passes it as --user-data-dir).
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1280, height: 860 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  // ---- The world: an invited admin, and a user with a device (through the API and the CLI).
  const api = async (method, p, body, token) => {
    const r = await fetch(url + p, { method, headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body ? JSON.stringify(body) : undefined });
    const text = await r.text();
    return { status: r.status, json: text ? JSON.parse(text) : null };
  };
  const outbox = () => cli("outbox", "--json").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const codeFor = (to) => outbox().reverse().find((m) => m.to === to).body.match(/\b\d{6}\b/)[0];

  assert.match(cli("admin", "--url", url, "users", "create", "ada", "--email", "ada@example.com", "--role", "admin"), /^invited ada/);
  let a = (await api("POST", "/v1/sign-up", { username: "tom", password: PW, email: "tom@example.com" })).json;
  assert.equal((await api("POST", `/v1/flows/${a.flow_id}`, { step: "confirm_sign_up", code: codeFor("tom@example.com") })).json.next_step.type, "done");
  assert.equal((await api("POST", "/v1/sign-in", { username: "tom", password: "not the password" })).status, 401);
  let t = (await api("POST", "/v1/sign-in", { username: "tom", password: PW })).json.tokens;
  a = (await api("POST", "/v1/me/factors", { type: "totp" }, t.access_token)).json;
  const tomSecret = a.next_step.secret;
  let n = (await api("POST", `/v1/flows/${a.flow_id}`, { step: "setup_totp", code: totp(tomSecret, -30) })).json;
  if (n.next_step.type === "save_recovery_codes") n = (await api("POST", `/v1/flows/${a.flow_id}`, { step: "save_recovery_codes" })).json;
  a = (await api("POST", "/v1/sign-in", { username: "tom", password: PW })).json;
  if (a.next_step.type === "select_mfa") await api("POST", `/v1/flows/${a.flow_id}`, { step: "select_mfa", method: "totp" });
  t = (await api("POST", `/v1/flows/${a.flow_id}`, { step: "totp_code", code: totp(tomSecret) })).json.tokens;
  assert.ok(t, "tom signed in at aal2");
  cli("device", "enroll", "--url", url, "--access-token", t.access_token, "--pin", "371946", "--name", "Tom's phone");
  const invitation = outbox().find((m) => m.to === "ada@example.com").body.match(/https?:\/\/\S+#flow_id=\S+&code=\d{6}/)[0];

  // ---- The browser.
  const page = await context.newPage();
  const cspViolations = [];
  page.on("console", (m) => { if (/Content.Security.Policy|Refused to/i.test(m.text())) cspViolations.push(m.text()); });
  page.on("pageerror", (e) => { cspViolations.push(`page error: ${e.message}`); });
  const checked = [];
  async function axe(name) {
    await page.evaluate(AXE);
    const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
    const serious = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    assert.deepEqual(serious.map((v) => `${v.id}: ${v.help} (${v.nodes.map((x) => x.target).join(" ")})`), [], `axe on ${name}`);
    checked.push({ page: name, violations: result.violations.map((v) => `${v.id} (${v.impact})`) });
    if (SHOTS) await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  }
  const heading = (text) => page.getByRole("heading", { level: 1, name: text }).waitFor();

  await page.goto(invitation);
  await heading("Accept your invitation");
  await axe("invite");
  await page.getByLabel("Choose a password").fill(PW);
  await page.getByRole("button", { name: "Accept" }).click();
  await heading("Your account is ready");

  await page.goto(`${url}/console`);
  await heading("Sign in");
  await axe("sign-in");
  await page.getByLabel("Username").fill("ada");
  await page.getByLabel("Password").fill(PW);
  await page.getByRole("button", { name: "Sign in" }).click();
  // No second factor yet: the console says so and sets one up.
  await heading("Add a second factor");
  await page.getByRole("button", { name: "Set up an authenticator app" }).click();
  await heading("Set up an authenticator app");
  await axe("totp-setup");
  const adaSecret = (await page.locator("code.secret").textContent()).trim();
  await page.getByLabel("The code your app shows now").fill(totp(adaSecret, -30));
  await page.getByRole("button", { name: "Continue" }).click();
  const next = page.getByRole("heading", { level: 1 });
  await next.filter({ hasText: /Save your recovery codes|Authenticator added/ }).waitFor();
  if ((await next.textContent()).includes("recovery")) await page.getByRole("button", { name: "I saved them" }).click();
  await heading("Authenticator added");
  await page.getByRole("button", { name: "Sign in again" }).click();
  await heading("Sign in");
  await page.getByLabel("Username").fill("ada");
  await page.getByLabel("Password").fill(PW);
  await page.getByRole("button", { name: "Sign in" }).click();
  await heading("Second factor");
  await page.getByLabel("Code from your authenticator app").fill(totp(adaSecret));
  await page.getByRole("button", { name: "Continue" }).click();

  // Users: find tom, revoke his device.
  await heading("Users");
  await axe("users");
  await page.getByLabel("Username, email or phone starts with").fill("to");
  await page.getByRole("button", { name: "Search" }).click();
  await page.getByRole("link", { name: "tom" }).click();
  await heading("User tom");
  await page.getByRole("button", { name: "Revoke the device Tom's phone" }).waitFor();
  await axe("user");
  await page.getByRole("button", { name: "Revoke the device Tom's phone" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByText("The device can no longer sign in").waitFor();
  await axe("confirm");
  await dialog.getByRole("button", { name: "Confirm" }).click();
  await page.getByRole("status").getByText("Device revoked.").waitFor();
  const tom = await api("GET", "/admin/v1/users/tom", null, TOKEN);
  assert.equal(tom.json.devices.devices.length, 0, "the device is revoked");
  const audit = await api("GET", "/admin/v1/audit?user=tom&kind=device_revoked", null, TOKEN);
  assert.equal(audit.json.events[0].detail.admin, "ada", "the audit log names the admin");

  // The funnel chart, delivery, risk, the audit log.
  await page.getByRole("link", { name: "Sign-in funnel" }).click();
  await heading("Sign-in funnel");
  const bars = await page.locator("svg.chart rect.bar").count();
  assert.ok(bars > 0, "the chart has bars");
  const summary = await page.locator("svg.chart").getAttribute("aria-label");
  assert.match(summary, /Passwords accepted [1-9]/);
  assert.match(summary, /Refused 1,/, "tom's one wrong password");
  await axe("funnel");
  for (const [link, title, name] of [["Delivery", "Delivery", "delivery"], ["Risk and lockouts", "Risk and lockouts", "risk"], ["Audit log", "Audit log", "audit"]]) {
    await page.getByRole("link", { name: link }).click();
    await heading(title);
    await axe(name);
  }
  assert.deepEqual(cspViolations, [], "no Content-Security-Policy violation and no script error");

  // Weights and load times of the console's first page, from the browser's own timing.
  // (sessionStorage is per tab: the same tab, reloaded, is still signed in.)
  await page.goto(`${url}/console/users`);
  await heading("Users");
  const timing = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    const files = [nav, ...performance.getEntriesByType("resource").filter((r) => r.name.includes("/console/"))];
    return {
      files: files.map((f) => ({ name: new URL(f.name).pathname, bytes: f.encodedBodySize })),
      total_bytes: files.reduce((n, f) => n + f.encodedBodySize, 0),
      dom_content_loaded_ms: Math.round(nav.domContentLoadedEventEnd),
      load_ms: Math.round(nav.loadEventEnd),
    };
  });
  console.log(JSON.stringify({ axe: checked, console_first_page: timing }, null, 2));
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await context.close();
  server.kill();
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
