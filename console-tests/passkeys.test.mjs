// Passkeys in a real browser: Debian's headless Chromium, driven by playwright-core, with a CDP
// virtual authenticator (CTAP2, internal, resident keys, user verification). Proof that a real
// WebAuthn client speaks Latchkey's options and that Latchkey accepts what it returns.
//
//   The real binary runs on a free port with passkeys on (rp_id "localhost", origin: the test's
//   page). A user signs up and reaches aal2 with TOTP through the API; the page at
//   http://localhost:<port>/ registers a passkey with navigator.credentials.create() from the
//   `passkey` step's options (PublicKeyCredential.parseCreationOptionsFromJSON, as docs/passkeys.md
//   shows) and answers with credential.toJSON(); then signs in with no username
//   (navigator.credentials.get) and gets aal2 tokens; then the same assertion is refused on a new
//   flow, and a page on another origin is refused.
import { chromium } from "playwright-core";
import { spawn, execFileSync } from "node:child_process";
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const BIN = path.resolve(process.env.BIN || "target/debug/latchkey");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const PW = "correct horse battery";
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "latchkey-passkeys-"));
const cli = (...args) => execFileSync(BIN, args, { cwd: dir, encoding: "utf8" });
const totp = (secret, offset = 0) => cli("totp", secret, "--at", String(Math.floor(Date.now() / 1000) + offset)).trim();

const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

// The app's page: any page of an allowed origin will do; the ceremonies run in page.evaluate.
const PAGE = "<!doctype html><html lang=en><title>Passkey test</title><h1>Passkey test</h1></html>";
const servePage = () => new Promise((resolve) => {
  const s = http.createServer((_, res) => { res.writeHead(200, { "content-type": "text/html" }); res.end(PAGE); });
  s.listen(0, "127.0.0.1", () => resolve(s));
});
const page1 = await servePage();
const page2 = await servePage();
const origin = `http://localhost:${page1.address().port}`;
const stranger = `http://localhost:${page2.address().port}`;

const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const server = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`], {
  cwd: dir,
  env: { ...process.env, LATCHKEY_POLICY__PASSKEYS__RP_ID: "localhost", LATCHKEY_POLICY__PASSKEYS__ORIGINS: `["${origin}"]` },
  stdio: ["ignore", "ignore", "pipe"],
});
await new Promise((resolve, reject) => {
  let buffered = "";
  const timer = setTimeout(() => reject(new Error(`serve did not start: ${buffered}`)), 30000);
  server.stderr.on("data", (chunk) => {
    buffered += chunk;
    if (/listening/.test(buffered)) { clearTimeout(timer); server.stderr.removeAllListeners("data"); server.stderr.resume(); resolve(); }
  });
  server.on("exit", (code) => reject(new Error(`serve exited ${code}: ${buffered}`)));
});

const api = async (method, p, body, token) => {
  const r = await fetch(url + p, { method, headers: { "content-type": "application/json", "user-agent": "passkey-test", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
};
const outbox = () => cli("outbox", "--json").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
const codeFor = (to) => outbox().reverse().find((m) => m.to === to).body.match(/\b\d{6}\b/)[0];

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  // ---- A user at aal2 (password and TOTP), through the API.
  let a = (await api("POST", "/v1/sign-up", { username: "wren", password: PW, email: "wren@example.com" })).json;
  assert.equal((await api("POST", `/v1/flows/${a.flow_id}`, { step: "confirm_sign_up", code: codeFor("wren@example.com") })).json.next_step.type, "done");
  let t = (await api("POST", "/v1/sign-in", { username: "wren", password: PW })).json.tokens;
  a = (await api("POST", "/v1/me/factors", { type: "totp" }, t.access_token)).json;
  const secret = a.next_step.secret;
  await api("POST", `/v1/flows/${a.flow_id}`, { step: "setup_totp", code: totp(secret, -30) });
  a = (await api("POST", "/v1/sign-in", { username: "wren", password: PW })).json;
  t = (await api("POST", `/v1/flows/${a.flow_id}`, { step: "totp_code", code: totp(secret) })).json.tokens;
  assert.ok(t, "wren signed in at aal2");

  // ---- The browser, with a platform-like virtual authenticator.
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  await page.goto(origin);
  const ceremony = (step) => page.evaluate(async ({ ceremony, options }) => {
    const credential = ceremony === "create"
      ? await navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options) })
      : await navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options) });
    return credential.toJSON();
  }, step);

  // Register.
  a = (await api("POST", "/v1/me/factors", { type: "passkey" }, t.access_token)).json;
  assert.equal(a.next_step.type, "passkey");
  assert.equal(a.next_step.ceremony, "create");
  const created = await ceremony(a.next_step);
  let done = (await api("POST", `/v1/flows/${a.flow_id}`, { step: "passkey", credential: created, name: "Chromium" })).json;
  assert.equal(done.next_step.type, "done", JSON.stringify(done));
  const listed = (await api("GET", "/v1/me/passkeys", null, t.access_token)).json.passkeys;
  assert.equal(listed.length, 1);
  assert.equal(listed[0].name, "Chromium");
  const { credentials } = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  assert.equal(credentials.length, 1, "a resident (discoverable) credential");
  assert.equal(credentials[0].isResidentCredential, true);

  // Sign in with no username.
  a = (await api("POST", "/v1/sign-in", { passkey: true })).json;
  assert.equal(a.next_step.ceremony, "get");
  const asserted = await ceremony(a.next_step);
  done = (await api("POST", `/v1/flows/${a.flow_id}`, { step: "passkey", credential: asserted })).json;
  assert.ok(done.tokens, JSON.stringify(done));
  const claims = JSON.parse(Buffer.from(done.tokens.access_token.split(".")[1], "base64url"));
  assert.equal(claims.acr, "aal2");
  assert.ok(claims.amr.includes("user") && claims.amr.includes("mfa"), JSON.stringify(claims.amr));
  const me = (await api("GET", "/v1/me", null, done.tokens.access_token)).json;
  assert.equal(me.username, "wren");

  // The same assertion on a new flow answers another challenge: refused.
  a = (await api("POST", "/v1/sign-in", { passkey: true })).json;
  let refused = (await api("POST", `/v1/flows/${a.flow_id}`, { step: "passkey", credential: asserted })).json;
  assert.equal(refused.error?.code, "code_mismatch");
  assert.ok(!refused.tokens);

  // A page on another origin (same relying-party id, not configured): refused.
  await page.goto(stranger);
  a = (await api("POST", "/v1/sign-in", { passkey: true })).json;
  const foreign = await ceremony(a.next_step);
  refused = (await api("POST", `/v1/flows/${a.flow_id}`, { step: "passkey", credential: foreign })).json;
  assert.equal(refused.error?.code, "code_mismatch");
  console.log(JSON.stringify({ passkeys: "ok", chromium: context.browser()?.version() ?? "persistent" }));
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await context.close();
  server.kill("SIGTERM");
  page1.close();
  page2.close();
}
process.exit(failed ? 1 : 0);
