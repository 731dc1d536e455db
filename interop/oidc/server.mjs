#!/usr/bin/env node
// Starts panva/oidc-provider on 127.0.0.1 with one public native client, for interop tests.
//
// Usage: node server.mjs [--port N]        (or OIDC_PORT=N; default 0 = a free port)
//
// Once listening it prints exactly one JSON line on stdout (see README.md) and nothing else
// there; logs go to stderr. SIGTERM or SIGINT closes it and exits 0.
//
// Environment (all optional):
//   OIDC_PORT                     port to listen on (0 = pick a free one)
//   OIDC_CLIENT_ID                client id (default "interop-public-client")
//   OIDC_REDIRECT_URIS            extra redirect URIs, comma separated, registered besides
//                                 http://127.0.0.1/callback
//   OIDC_ACCESS_TOKEN_TTL         access token lifetime in seconds (default 300)
//   OIDC_REFRESH_TOKEN_TTL        refresh token lifetime in seconds (default 86400)
//   OIDC_ALWAYS_ISSUE_REFRESH_TOKEN=1
//                                 issue a refresh token on every code exchange, without the
//                                 standard offline_access + prompt=consent requirement
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';

const HOST = '127.0.0.1';
const CLIENT_ID = process.env.OIDC_CLIENT_ID || 'interop-public-client';
const BASE_REDIRECT_URI = `http://${HOST}/callback`;
// The resource server (RFC 8707) whose access tokens are JWTs with an audience.
const API_RESOURCE = 'urn:interop:api';
const API_SCOPES = 'api:read api:write';

function intEnv(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) fail(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return n;
}

function fail(message) {
  process.stderr.write(`server.mjs: ${message}\n`);
  process.exit(2);
}

function parsePort() {
  const args = process.argv.slice(2);
  let port = intEnv('OIDC_PORT', 0);
  for (let i = 0; i < args.length; i += 1) {
    if (args[i] === '--port' && i + 1 < args.length) {
      port = Number(args[i += 1]);
    } else if (args[i].startsWith('--port=')) {
      port = Number(args[i].slice('--port='.length));
    } else if (args[i] === '--help' || args[i] === '-h') {
      process.stderr.write('usage: node server.mjs [--port N]\n');
      process.exit(0);
    } else {
      fail(`unknown argument ${JSON.stringify(args[i])} (usage: node server.mjs [--port N])`);
    }
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail('port must be an integer in 0..65535');
  return port;
}

const accessTokenTTL = intEnv('OIDC_ACCESS_TOKEN_TTL', 300);
const refreshTokenTTL = intEnv('OIDC_REFRESH_TOKEN_TTL', 86400);
const alwaysIssueRefreshToken = process.env.OIDC_ALWAYS_ISSUE_REFRESH_TOKEN === '1';
const extraRedirectUris = (process.env.OIDC_REDIRECT_URIS || '')
  .split(',').map((s) => s.trim()).filter(Boolean);

// A fresh signing key per run, so oidc-provider does not fall back to its published dev keys.
function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' };
}

function configuration() {
  return {
    clients: [{
      client_id: CLIENT_ID,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [BASE_REDIRECT_URI, ...extraRedirectUris],
    }],
    // Any login is accepted by the dev interactions; the account id is whatever was typed.
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims() { return { sub }; },
      };
    },
    responseTypes: ['code'],
    // Resource-server scopes (api:read, api:write) are declared by getResourceServerInfo below.
    scopes: ['openid', 'offline_access'],
    claims: { openid: ['sub'] },
    pkce: {
      methods: ['S256'],
      required: () => true,
    },
    ...(alwaysIssueRefreshToken ? {
      async issueRefreshToken(ctx, client) { return client.grantTypeAllowed('refresh_token'); },
    } : {}),
    features: {
      devInteractions: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: false },
      resourceIndicators: {
        enabled: true,
        // No resource parameter: an opaque access token (for the userinfo endpoint).
        async defaultResource(ctx, client, oneOf) { return oneOf || undefined; },
        // At the token endpoint, without a resource parameter, keep the resource granted earlier.
        async useGrantedResource() { return true; },
        async getResourceServerInfo(ctx, resourceIndicator) {
          if (resourceIndicator !== API_RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: API_SCOPES,
            audience: API_RESOURCE,
            accessTokenTTL,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    ttl: {
      AccessToken: accessTokenTTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
      Grant: refreshTokenTTL,
      RefreshToken: refreshTokenTTL,
    },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    jwks: { keys: [signingKey()] },
    clientBasedCORS: () => false,
    renderError(ctx, out) {
      ctx.type = 'html';
      const text = Object.entries(out).map(([k, v]) => `${k}: ${v}`).join('\n');
      ctx.body = `<!DOCTYPE html><html><head><title>oidc-provider error</title></head><body><pre>${text
        .replace(/&/g, '&amp;').replace(/</g, '&lt;')}</pre></body></html>`;
    },
  };
}

const port = parsePort();
const server = createServer();
server.on('error', (err) => fail(`listen on ${HOST}:${port}: ${err.message}`));
server.listen(port, HOST, () => {
  const { port: bound } = server.address();
  const issuer = `http://${HOST}:${bound}`;
  const provider = new Provider(issuer, configuration());
  provider.on('server_error', (ctx, err) => process.stderr.write(`server.mjs: server_error: ${err.stack}\n`));
  for (const event of ['authorization.error', 'grant.error']) {
    provider.on(event, (ctx, err) => process.stderr.write(`server.mjs: ${event}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}\n`));
  }
  server.on('request', provider.callback());

  const url = (route) => new URL(provider.pathFor(route), issuer).href;
  process.stdout.write(`${JSON.stringify({
    issuer,
    authorization_endpoint: url('authorization'),
    token_endpoint: url('token'),
    revocation_endpoint: url('revocation'),
    userinfo_endpoint: url('userinfo'),
    jwks_uri: url('jwks'),
    discovery: `${issuer}/.well-known/openid-configuration`,
    client_id: CLIENT_ID,
    redirect_uri: BASE_REDIRECT_URI,
    api_resource: API_RESOURCE,
    pid: process.pid,
  })}\n`);
});

let closing = false;
function shutdown(signal) {
  if (closing) return;
  closing = true;
  process.stderr.write(`server.mjs: ${signal}, closing\n`);
  server.close(() => process.exit(0));
  server.closeAllConnections();
  // Idle keep-alive sockets are closed above; never wait more than 2 s for the rest.
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
