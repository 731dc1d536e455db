#!/usr/bin/env node
// Plays the user's browser through oidc-provider's dev interactions (login, then consent).
//
// Usage: node browser.mjs [--print-only] [--login NAME] [--password PW] [--timeout SECONDS] <authorization-url>
//
// GETs the authorization URL, follows redirects with a cookie jar, submits the login form and
// the consent form, and stops at the first redirect that leaves the authorization server for the
// client's redirect URI. It prints that URL on stdout (one line). By default it then GETs it, so a
// loopback listener waiting for the callback (a CLI's `login`) receives it; with --print-only it
// does not. Exit 0 on success, 1 on any failure (the reason goes to stderr).
//
// Also importable: `runBrowser(url, options)` resolves to the redirect URL.
import process from 'node:process';
import { pathToFileURL } from 'node:url';

export const DEFAULT_LOGIN = 'interop-user';
export const DEFAULT_PASSWORD = 'interop-password';
const MAX_STEPS = 20;

// A tiny cookie jar: enough for oidc-provider's host-only cookies (name, value, path, expiry).
export class CookieJar {
  #cookies = new Map(); // key `${host}|${path}|${name}` -> { host, path, name, value, expires }

  store(url, response) {
    const { host } = new URL(url);
    for (const header of response.headers.getSetCookie()) {
      const [pair, ...attrs] = header.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = '/';
      let expires = Infinity;
      for (const attr of attrs) {
        const [k, ...rest] = attr.split('=');
        const key = k.trim().toLowerCase();
        const v = rest.join('=').trim();
        if (key === 'path' && v.startsWith('/')) path = v;
        else if (key === 'max-age') expires = Date.now() + Number(v) * 1000;
        else if (key === 'expires' && expires === Infinity) expires = Date.parse(v);
      }
      const id = `${host}|${path}|${name}`;
      if (!(expires > Date.now())) this.#cookies.delete(id);
      else this.#cookies.set(id, { host, path, name, value, expires });
    }
  }

  header(url) {
    const { host, pathname } = new URL(url);
    const now = Date.now();
    const pairs = [];
    for (const c of this.#cookies.values()) {
      if (c.host !== host || c.expires <= now) continue;
      const prefix = c.path.endsWith('/') ? c.path : `${c.path}/`;
      if (pathname === c.path || pathname.startsWith(prefix)) pairs.push(`${c.name}=${c.value}`);
    }
    return pairs.join('; ');
  }
}

function decodeEntities(s) {
  return s.replace(/&(#x[0-9a-f]+|#[0-9]+|amp|lt|gt|quot|apos|#39);/gi, (m, e) => {
    const l = e.toLowerCase();
    if (l.startsWith('#x')) return String.fromCodePoint(parseInt(l.slice(2), 16));
    if (l.startsWith('#')) return String.fromCodePoint(parseInt(l.slice(1), 10));
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[l] ?? m;
  });
}

function attributes(tag) {
  const out = {};
  const re = /([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  // Skip the tag name itself.
  const body = tag.replace(/^<\s*[a-zA-Z]+/, '').replace(/\/?>$/, '');
  for (const m of body.matchAll(re)) {
    out[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

// The HTML forms on a page: [{ action, method, inputs: [{ name, type, value }] }].
export function parseForms(html, baseUrl) {
  const forms = [];
  for (const m of html.matchAll(/<form\b[^>]*>([\s\S]*?)<\/form\s*>/gi)) {
    const openTag = m[0].match(/^<form\b[^>]*>/i)[0];
    const attrs = attributes(openTag);
    const inputs = [];
    for (const im of m[1].matchAll(/<input\b[^>]*>/gi)) {
      const a = attributes(im[0]);
      if (a.name) inputs.push({ name: a.name, type: (a.type || 'text').toLowerCase(), value: a.value ?? '' });
    }
    forms.push({
      action: new URL(attrs.action || baseUrl, baseUrl).href,
      method: (attrs.method || 'get').toLowerCase(),
      inputs,
    });
  }
  return forms;
}

function fillForm(form, { login, password }) {
  const body = new URLSearchParams();
  for (const input of form.inputs) {
    if (['submit', 'button', 'image', 'reset', 'file'].includes(input.type)) continue;
    if (['checkbox', 'radio'].includes(input.type)) continue; // none in the dev interactions
    let { value } = input;
    if (input.type === 'password') value = password;
    else if (input.name === 'login' || input.name === 'username' || input.name === 'email') value = login;
    body.append(input.name, value);
  }
  return body;
}

function visibleText(html) {
  return decodeEntities(html.replace(/<(script|style)\b[\s\S]*?<\/\1>/gi, ' ').replace(/<[^>]+>/g, ' '))
    .replace(/\s+/g, ' ').trim().slice(0, 600);
}

// The client's redirect URI: from the authorization URL's redirect_uri, else any other origin.
function isClientRedirect(location, authUrl) {
  const target = new URL(location);
  const redirectUri = authUrl.searchParams.get('redirect_uri');
  if (redirectUri) {
    const r = new URL(redirectUri);
    // Loopback redirect URIs may carry any port (RFC 8252 §7.3): compare without the port.
    if (target.protocol === r.protocol && target.hostname === r.hostname && target.pathname === r.pathname) {
      return true;
    }
  }
  return target.origin !== authUrl.origin;
}

async function request(url, init, deadline, what) {
  const remaining = deadline - Date.now();
  if (remaining <= 0) throw new Error(`timed out before ${what} ${url}`);
  try {
    return await fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.timeout(remaining) });
  } catch (err) {
    const reason = err.name === 'TimeoutError' ? 'timed out' : (err.cause?.message || err.message);
    throw new Error(`${what} ${url} failed: ${reason}`);
  }
}

/**
 * Runs the browser side of the authorization code flow.
 * options: { printOnly = false, login, password, timeoutMs = 20000, log = () => {} }
 * Resolves to the redirect URL (string); rejects with a message on any failure.
 */
export async function runBrowser(authorizationUrl, options = {}) {
  const {
    printOnly = false,
    login = DEFAULT_LOGIN,
    password = DEFAULT_PASSWORD,
    timeoutMs = 20000,
    log = () => {},
  } = options;
  const deadline = Date.now() + timeoutMs;
  const authUrl = new URL(authorizationUrl);
  const jar = new CookieJar();

  let next = { url: authUrl.href, method: 'GET', body: undefined };
  const submitted = new Set();
  for (let step = 0; step < MAX_STEPS; step += 1) {
    const headers = { accept: 'text/html' };
    const cookie = jar.header(next.url);
    if (cookie) headers.cookie = cookie;
    if (next.body) headers['content-type'] = 'application/x-www-form-urlencoded';
    log(`${next.method} ${next.url}`);
    const res = await request(next.url, { method: next.method, headers, body: next.body }, deadline, next.method);
    jar.store(next.url, res);

    if (res.status >= 300 && res.status < 400) {
      const raw = res.headers.get('location');
      await res.body?.cancel();
      if (!raw) throw new Error(`${res.status} from ${next.url} without a Location header`);
      const location = new URL(raw, next.url).href;
      if (isClientRedirect(location, authUrl)) {
        if (!printOnly) await deliver(location, deadline, log);
        return location;
      }
      next = { url: location, method: 'GET', body: undefined };
      continue;
    }

    const html = await res.text();
    if (res.status !== 200) {
      throw new Error(`${next.method} ${next.url} answered ${res.status}: ${visibleText(html)}`);
    }
    const form = parseForms(html, next.url).find((f) => f.method === 'post');
    if (!form) throw new Error(`no form to submit on ${next.url}: ${visibleText(html)}`);
    const body = fillForm(form, { login, password });
    const key = `${form.action} ${body}`;
    if (submitted.has(key)) throw new Error(`the same form came back after submitting it (${form.action}): ${visibleText(html)}`);
    submitted.add(key);
    log(`form ${body.get('prompt') || '?'} -> ${form.action}`);
    next = { url: form.action, method: 'POST', body: body.toString() };
  }
  throw new Error(`no redirect to the client after ${MAX_STEPS} requests`);
}

async function deliver(location, deadline, log) {
  log(`delivering GET ${location}`);
  const res = await request(location, { method: 'GET' }, deadline, 'delivering the redirect: GET');
  await res.body?.cancel();
  log(`redirect listener answered ${res.status}`);
}

function usage(msg) {
  if (msg) process.stderr.write(`browser.mjs: ${msg}\n`);
  process.stderr.write('usage: node browser.mjs [--print-only] [--login NAME] [--password PW] [--timeout SECONDS] [--verbose] <authorization-url>\n');
  process.exit(msg ? 1 : 0);
}

async function main(argv) {
  const opts = { printOnly: false, timeoutMs: 20000 };
  let url;
  let verbose = false;
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    const value = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); i += 1; return argv[i]; };
    if (a === '--print-only') opts.printOnly = true;
    else if (a === '--login') opts.login = value();
    else if (a === '--password') opts.password = value();
    else if (a === '--timeout') opts.timeoutMs = Number(value()) * 1000;
    else if (a === '--verbose' || a === '-v') verbose = true;
    else if (a === '--help' || a === '-h') usage();
    else if (a.startsWith('-')) usage(`unknown option ${a}`);
    else if (url) usage('only one authorization URL');
    else url = a;
  }
  if (!url) usage('missing the authorization URL');
  if (!(opts.timeoutMs > 0)) usage('--timeout must be a positive number of seconds');
  if (verbose) opts.log = (line) => process.stderr.write(`browser.mjs: ${line}\n`);
  try {
    new URL(url); // eslint-disable-line no-new
  } catch {
    usage(`not a URL: ${url}`);
  }
  try {
    const location = await runBrowser(url, opts);
    process.stdout.write(`${location}\n`);
    const error = new URL(location).searchParams.get('error');
    if (error) process.stderr.write(`browser.mjs: note: the redirect carries error=${error}\n`);
  } catch (err) {
    process.stderr.write(`browser.mjs: ${err.message}\n`);
    process.exitCode = 1;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await main(process.argv.slice(2));
}
