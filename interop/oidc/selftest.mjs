#!/usr/bin/env node
// Proves the harness works, with no Rust involved: starts server.mjs, runs the authorization code
// flow with PKCE S256 through browser.mjs (in-process and as a CLI delivering to a loopback
// listener), exchanges the code, refreshes, and checks the oidc-provider behaviour README.md
// documents. Exits 1 on the first failure, saying what failed; always stops the server it started.
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

import { runBrowser } from './browser.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const STEP_TIMEOUT_MS = 20000;
const TOTAL_TIMEOUT_MS = 90000;

let server; // child process
let serverStderr = '';
let passed = 0;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function ok(name) {
  passed += 1;
  process.stdout.write(`ok ${passed} - ${name}\n`);
}

function withTimeout(promise, what, ms = STEP_TIMEOUT_MS) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms / 1000} s`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

function startServer() {
  server = spawn(process.execPath, [join(HERE, 'server.mjs')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, OIDC_PORT: '0', OIDC_ACCESS_TOKEN_TTL: '300' },
  });
  server.stderr.setEncoding('utf8');
  server.stderr.on('data', (d) => { serverStderr += d; });
  return withTimeout(new Promise((resolve, reject) => {
    let out = '';
    server.stdout.setEncoding('utf8');
    server.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        try { resolve(JSON.parse(out.slice(0, nl))); } catch (e) { reject(new Error(`server.mjs printed a line that is not JSON: ${out.slice(0, nl)}`)); }
      }
    });
    server.on('exit', (code, signal) => reject(new Error(`server.mjs exited (${signal || code}) before printing its JSON line`)));
    server.on('error', reject);
  }), 'starting server.mjs');
}

async function stopServer() {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((resolve) => server.once('exit', (code, signal) => resolve({ code, signal })));
  server.kill('SIGTERM');
  let timer;
  const result = await Promise.race([exited, new Promise((r) => { timer = setTimeout(() => r(null), 5000); })]);
  clearTimeout(timer);
  if (!result) {
    server.kill('SIGKILL');
    await exited;
    throw new Error('server.mjs did not exit within 5 s of SIGTERM');
  }
  return result;
}

async function http(url, init = {}) {
  try {
    return await fetch(url, { redirect: 'manual', ...init, signal: AbortSignal.timeout(STEP_TIMEOUT_MS) });
  } catch (err) {
    throw new Error(`${init.method || 'GET'} ${url}: ${err.name === 'TimeoutError' ? 'timed out' : (err.cause?.message || err.message)}`);
  }
}

async function tokenRequest(meta, params, { json = false } = {}) {
  const res = await http(meta.token_endpoint, {
    method: 'POST',
    headers: {
      'content-type': json ? 'application/json' : 'application/x-www-form-urlencoded',
      accept: 'application/json',
    },
    body: json ? JSON.stringify(params) : new URLSearchParams(params).toString(),
  });
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch { body = undefined; }
  return { status: res.status, headers: res.headers, text, body };
}

function pkce() {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  return { verifier, challenge };
}

function authorizationUrl(meta, { redirectUri, scope, prompt, state, challenge, resource }) {
  const url = new URL(meta.authorization_endpoint);
  const p = {
    response_type: 'code',
    client_id: meta.client_id,
    redirect_uri: redirectUri,
    scope,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  };
  if (prompt) p.prompt = prompt;
  if (resource) p.resource = resource;
  for (const [k, v] of Object.entries(p)) url.searchParams.set(k, v);
  return url.href;
}

function jwtPayload(token) {
  const parts = token.split('.');
  check(parts.length === 3, `expected a JWT access token, got ${JSON.stringify(token.slice(0, 40))}...`);
  return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
}

// Runs a browser flow and checks the authorization response; returns { code, verifier }.
async function authorize(meta, { redirectUri, scope, prompt = 'consent', resource, deliverVia }) {
  const { verifier, challenge } = pkce();
  const state = randomBytes(16).toString('base64url');
  const url = authorizationUrl(meta, { redirectUri, scope, prompt, state, challenge, resource });
  const location = deliverVia ? await deliverVia(url) : await runBrowser(url, { printOnly: true, timeoutMs: STEP_TIMEOUT_MS });
  const got = new URL(location);
  const want = new URL(redirectUri);
  check(`${got.origin}${got.pathname}` === `${want.origin}${want.pathname}`, `redirected to ${location}, expected ${redirectUri}`);
  check(!got.searchParams.has('error'), `authorization error: ${got.searchParams.get('error')}: ${got.searchParams.get('error_description')}`);
  check(got.searchParams.get('state') === state, `state mismatch: sent ${state}, got ${got.searchParams.get('state')}`);
  check(got.searchParams.get('iss') === meta.issuer, `iss (RFC 9207) is ${JSON.stringify(got.searchParams.get('iss'))}, expected ${meta.issuer}`);
  const code = got.searchParams.get('code');
  check(code, `no code in ${location}`);
  return { code, verifier };
}

function checkTokenResponse(r, what, { refresh = true } = {}) {
  check(r.status === 200, `${what}: HTTP ${r.status}: ${r.text}`);
  const cty = r.headers.get('content-type') || '';
  check(cty.startsWith('application/json'), `${what}: content-type is ${cty}`);
  check(/no-store/.test(r.headers.get('cache-control') || ''), `${what}: cache-control is ${r.headers.get('cache-control')}`);
  const t = r.body;
  check(typeof t.access_token === 'string' && t.access_token.length > 0, `${what}: no access_token in ${r.text}`);
  check(t.token_type === 'Bearer', `${what}: token_type is ${t.token_type}`);
  check(Number.isInteger(t.expires_in) && t.expires_in > 0 && t.expires_in <= 300, `${what}: expires_in is ${t.expires_in}`);
  if (refresh) check(typeof t.refresh_token === 'string' && t.refresh_token.length > 0, `${what}: no refresh_token in ${r.text}`);
  return t;
}

// Starts a one-shot loopback listener for the redirect, like a CLI's `login` does.
function callbackListener() {
  let resolveHit;
  const hit = new Promise((r) => { resolveHit = r; });
  const srv = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
    res.end('login complete, you may close this window\n');
    resolveHit(`http://${req.headers.host}${req.url}`);
  });
  return new Promise((resolve, reject) => {
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve({ port: srv.address().port, hit, close: () => srv.close() }));
  });
}

// Runs browser.mjs as a CLI (default mode: it GETs the redirect URL) and checks the listener got it.
async function browserCli(url, listener) {
  const child = spawn(process.execPath, [join(HERE, 'browser.mjs'), '--timeout', '20', url], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
  child.stderr.setEncoding('utf8').on('data', (d) => { err += d; });
  const code = await withTimeout(new Promise((resolve, reject) => {
    child.on('exit', resolve);
    child.on('error', reject);
  }), 'browser.mjs', STEP_TIMEOUT_MS + 5000).catch((e) => { child.kill('SIGKILL'); throw e; });
  check(code === 0, `browser.mjs exited ${code}: ${err.trim()}`);
  const printed = out.trim();
  const received = await withTimeout(listener.hit, 'waiting for the redirect on the loopback listener');
  check(printed === received, `browser.mjs printed ${printed} but the listener received ${received}`);
  return printed;
}

async function main() {
  const meta = await startServer();
  check(meta.issuer && meta.authorization_endpoint && meta.token_endpoint && meta.client_id, `server.mjs JSON line lacks fields: ${JSON.stringify(meta)}`);
  ok(`server.mjs started: ${meta.issuer}`);

  const disco = await http(meta.discovery).then((r) => r.json());
  check(disco.issuer === meta.issuer, `discovery issuer ${disco.issuer} != ${meta.issuer}`);
  check(disco.authorization_response_iss_parameter_supported === true, 'discovery lacks authorization_response_iss_parameter_supported: true');
  check(JSON.stringify(disco.code_challenge_methods_supported) === '["S256"]', `code_challenge_methods_supported is ${JSON.stringify(disco.code_challenge_methods_supported)}`);
  check(disco.token_endpoint === meta.token_endpoint, 'discovery token_endpoint differs from the JSON line');
  ok('discovery: iss parameter supported, PKCE S256 only');

  // 1. Authorization code + PKCE, in-process browser, an arbitrary loopback port (RFC 8252 §7.3).
  const redirectUri = 'http://127.0.0.1:49217/callback';
  const a = await authorize(meta, { redirectUri, scope: 'openid offline_access' });
  ok('authorization response on a loopback port that was not registered: code, state, iss');

  const wrongVerifier = await tokenRequest(meta, {
    grant_type: 'authorization_code', code: a.code, redirect_uri: redirectUri, client_id: meta.client_id, code_verifier: pkce().verifier,
  });
  check(wrongVerifier.status === 400 && wrongVerifier.body?.error === 'invalid_grant', `a wrong code_verifier gave ${wrongVerifier.status} ${wrongVerifier.text}`);
  ok('token endpoint rejects a wrong code_verifier (invalid_grant)');

  // A failed PKCE check does not spend the code: the right verifier still works.
  const exchanged = await tokenRequest(meta, {
    grant_type: 'authorization_code', code: a.code, redirect_uri: redirectUri, client_id: meta.client_id, code_verifier: a.verifier,
  });
  const t1 = checkTokenResponse(exchanged, 'code exchange');
  check(typeof t1.id_token === 'string', 'code exchange: no id_token although scope has openid');
  check(t1.scope.split(' ').includes('offline_access'), `code exchange: scope is ${t1.scope}`);
  ok(`code exchange (the failed PKCE check left the code usable): access_token, refresh_token, expires_in=${t1.expires_in}, scope="${t1.scope}"`);

  const me = await http(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${t1.access_token}` } });
  check(me.status === 200, `userinfo with the access token: HTTP ${me.status}`);
  const claims = await me.json();
  check(claims.sub === 'interop-user', `userinfo sub is ${claims.sub}`);
  ok('the opaque access token works at userinfo (sub=interop-user)');

  const refreshed = await tokenRequest(meta, { grant_type: 'refresh_token', refresh_token: t1.refresh_token, client_id: meta.client_id });
  const t2 = checkTokenResponse(refreshed, 'refresh_token grant');
  check(t2.refresh_token !== t1.refresh_token, 'refresh_token grant: refresh token was not rotated');
  check(t2.access_token !== t1.access_token, 'refresh_token grant: same access token');
  ok(`refresh_token grant: new access_token, rotated refresh_token, expires_in=${t2.expires_in}`);

  const replay = await tokenRequest(meta, { grant_type: 'refresh_token', refresh_token: t1.refresh_token, client_id: meta.client_id });
  check(replay.status === 400 && replay.body?.error === 'invalid_grant', `replaying the rotated refresh token gave ${replay.status} ${replay.text}`);
  const afterReplay = await tokenRequest(meta, { grant_type: 'refresh_token', refresh_token: t2.refresh_token, client_id: meta.client_id });
  check(afterReplay.status === 400 && afterReplay.body?.error === 'invalid_grant', `after a replay the newest refresh token gave ${afterReplay.status} ${afterReplay.text}`);
  ok('replaying a rotated refresh token: invalid_grant, and it revokes the whole grant');

  const asJson = await tokenRequest(meta, { grant_type: 'refresh_token', refresh_token: 'x', client_id: meta.client_id }, { json: true });
  check(asJson.status === 400 && asJson.body?.error === 'invalid_request', `a JSON token request gave ${asJson.status} ${asJson.text}`);
  ok(`token endpoint refuses a JSON body: ${asJson.body.error_description}`);

  // A code presented twice: invalid_grant, and the tokens issued for it are revoked.
  const e = await authorize(meta, { redirectUri, scope: 'openid offline_access' });
  const first = checkTokenResponse(await tokenRequest(meta, {
    grant_type: 'authorization_code', code: e.code, redirect_uri: redirectUri, client_id: meta.client_id, code_verifier: e.verifier,
  }), 'code exchange');
  const reused = await tokenRequest(meta, {
    grant_type: 'authorization_code', code: e.code, redirect_uri: redirectUri, client_id: meta.client_id, code_verifier: e.verifier,
  });
  check(reused.status === 400 && reused.body?.error === 'invalid_grant', `reusing the code gave ${reused.status} ${reused.text}`);
  const revoked = await http(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${first.access_token}` } });
  check(revoked.status === 401, `the access token from a reused code still works at userinfo (HTTP ${revoked.status})`);
  const revokedRt = await tokenRequest(meta, { grant_type: 'refresh_token', refresh_token: first.refresh_token, client_id: meta.client_id });
  check(revokedRt.status === 400 && revokedRt.body?.error === 'invalid_grant', `the refresh token from a reused code gave ${revokedRt.status} ${revokedRt.text}`);
  ok('a code works once: reuse gives invalid_grant and revokes the tokens it had issued');

  // 2. offline_access without prompt=consent: no refresh token.
  const c = await authorize(meta, { redirectUri, scope: 'openid offline_access', prompt: null });
  const noConsent = await tokenRequest(meta, {
    grant_type: 'authorization_code', code: c.code, redirect_uri: redirectUri, client_id: meta.client_id, code_verifier: c.verifier,
  });
  const t3 = checkTokenResponse(noConsent, 'code exchange without prompt=consent', { refresh: false });
  check(t3.refresh_token === undefined, 'a refresh token was issued without prompt=consent');
  ok(`without prompt=consent, offline_access is dropped: no refresh_token, scope="${t3.scope}"`);

  // 3. browser.mjs as a CLI delivering to a loopback listener; a resource indicator gives a JWT.
  const listener = await callbackListener();
  try {
    const cliRedirect = `http://127.0.0.1:${listener.port}/callback`;
    const d = await authorize(meta, {
      redirectUri: cliRedirect,
      scope: 'offline_access api:read',
      resource: meta.api_resource,
      deliverVia: (url) => browserCli(url, listener),
    });
    ok('browser.mjs CLI delivered the redirect to a loopback listener and printed it');

    const withResource = await tokenRequest(meta, {
      grant_type: 'authorization_code', code: d.code, redirect_uri: cliRedirect, client_id: meta.client_id, code_verifier: d.verifier,
    });
    const t4 = checkTokenResponse(withResource, 'code exchange with a resource indicator');
    check(t4.id_token === undefined, 'an id_token without the openid scope');
    const claims4 = jwtPayload(t4.access_token);
    check(claims4.aud === meta.api_resource, `JWT aud is ${JSON.stringify(claims4.aud)}`);
    check(claims4.iss === meta.issuer, `JWT iss is ${claims4.iss}`);
    check(claims4.scope === 'api:read', `JWT scope is ${claims4.scope}`);
    check(claims4.exp - claims4.iat === t4.expires_in, `JWT lifetime ${claims4.exp - claims4.iat} != expires_in ${t4.expires_in}`);
    ok(`without openid, with resource=${meta.api_resource}: JWT access token (aud, scope="${claims4.scope}"), refresh_token`);

    const refreshed4 = await tokenRequest(meta, { grant_type: 'refresh_token', refresh_token: t4.refresh_token, client_id: meta.client_id });
    const t5 = checkTokenResponse(refreshed4, 'refresh_token grant with a granted resource');
    check(jwtPayload(t5.access_token).aud === meta.api_resource, 'the refreshed JWT has another audience');
    ok('refresh_token grant keeps the granted resource (JWT aud) without a resource parameter');
  } finally {
    listener.close();
  }

  const stopped = await stopServer();
  check(stopped.code === 0, `server.mjs exited with ${stopped.signal || stopped.code} on SIGTERM`);
  ok('server.mjs exits 0 on SIGTERM');
}

const watchdog = setTimeout(async () => {
  process.stdout.write(`not ok - the self-test took longer than ${TOTAL_TIMEOUT_MS / 1000} s\n`);
  server?.kill('SIGKILL');
  process.exit(1);
}, TOTAL_TIMEOUT_MS);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { server?.kill('SIGKILL'); process.exit(1); });
}
process.on('exit', () => { if (server && server.exitCode === null && server.signalCode === null) server.kill('SIGKILL'); });

try {
  await main();
  process.stdout.write(`${passed} passed, 0 failed\n`);
} catch (err) {
  process.stdout.write(`not ok ${passed + 1} - ${err.message}\n`);
  const log = serverStderr.split('\n').filter((l) => l && !l.includes('WARNING')).slice(-15).join('\n');
  if (log) process.stdout.write(`server.mjs stderr (last lines):\n${log}\n`);
  process.stdout.write(`${passed} passed, 1 failed\n`);
  process.exitCode = 1;
} finally {
  try { await stopServer(); } catch (e) { process.stdout.write(`${e.message}\n`); process.exitCode = 1; }
  clearTimeout(watchdog);
}
