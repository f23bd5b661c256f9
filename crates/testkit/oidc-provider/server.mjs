// A local OpenID Connect provider that stands in for Microsoft Entra ID in tests
// (npm `oidc-provider` 9, OpenID Certified). Started by testkit's `TestOidc`.
//
//   node server.mjs CONFIG.json
//
// Listens on 127.0.0.1, prints ONE line to stdout once listening,
//   {"ready":true,"port":P,"authority":"http://127.0.0.1:P"}
// and exits when its stdin closes (so a test process that dies takes it along) or on
// SIGTERM/SIGINT. By hand, keep stdin open: `sleep infinity | node server.mjs c.json`.
// Logs go to stderr only (method, path without query, status); tokens, codes and
// secrets are never logged.
//
// CONFIG.json:
// {"port": 0,                                  // 0 = a free port
//  "tenants": [
//   {"tid": "11111111-1111-1111-1111-111111111111",
//    "clients": [
//      {"client_id": "app-1", "redirect_uris": ["http://127.0.0.1:5004/api/auth/sso/azure/callback"]},
//      {"client_id": "app-2", "client_secret": "s3cret", "redirect_uris": ["..."]}],
//    "users": [
//      {"login_hint": "alice@corp.com", "oid": "aaaa-...", "email": "alice@corp.com",
//       "name": "Alice Example", "groups": ["g1", "g2"], "groups_overage": false,
//       "xms_edov": true, "tid": null, "tamper_nonce": false}],
//    "literal_tenantid_issuer": false,
//    "hide_signing_key": false,
//    "access_token_ttl": 3600,                 // seconds, echoed as expires_in
//    "id_token_ttl": 3600,                     // seconds
//    "refresh_token_ttl": 7776000}]}           // seconds (90 days, as Entra's)
//
// Every tenant is its own oidc-provider `Provider` (own keys, own storage, own cookies),
// mounted at /{tid}/v2.0, so its issuer is `{authority}/{tid}/v2.0` and its discovery
// document is at `{authority}/{tid}/v2.0/.well-known/openid-configuration`, as Entra
// ID's are. Endpoints (all absolute URLs under the authority):
//   authorization  {issuer}/auth          token     {issuer}/token
//   jwks           {issuer}/jwks          userinfo  {issuer}/me
//   end_session    {issuer}/session/end
//
// Clients: without `client_secret` a client is public (token_endpoint_auth_method
// `none`); with one it is registered as `client_secret_post`, and oidc-provider accepts
// the secret either in the body (client_secret_post) or in an HTTP Basic header
// (client_secret_basic). PKCE with S256 is required for every client. Response type
// `code` only; grant types authorization_code and refresh_token. Scopes: openid profile
// email offline_access User.Read.
//
// ID tokens (RS256, claims not held back for userinfo): sub (= oid), tid (the tenant's,
// or the user's `tid` override), oid, groups (or, with `groups_overage`, Entra's
// overage indication `_claim_names`/`_claim_sources` pointing at Microsoft Graph's
// getMemberObjects instead), xms_edov (when the user has it), nonce; with scope
// `profile`: name, preferred_username (= email); with scope `email`: email.
//
// Sign-in has no pages. The authorization request (GET) must carry `login_hint`: the
// provider signs that user in and grants the requested scopes at once, then redirects to
// the redirect_uri with `?code=...&state=...`. The browser-less client only follows
// redirects (303s) keeping cookies. An unknown or missing login_hint redirects to the
// redirect_uri with `error=access_denied` (and `state`). A bad client_id or redirect_uri
// gets a 400 JSON error, as oidc-provider does not redirect to unverified URIs.
// Every authorization request (unless it says prompt=none) goes through one such
// sign-in: `login` and `consent` are added to its prompt. (oidc-provider, following the
// OpenID Connect spec, drops `offline_access` unless prompt=consent is present; Entra
// issues refresh tokens for offline_access without it, so this makes refresh tokens come
// out as they do from Entra.) Refresh tokens rotate on every use (Entra returns a new one
// each time); reusing a rotated one gives `invalid_grant` and revokes the grant.
//
// Test switches:
//   user.tamper_nonce             the request's nonce is replaced by another value before
//                                 the request is processed, so the ID token's nonce is
//                                 not the one the relying party sent.
//   tenant.literal_tenantid_issuer the discovery document's issuer and the ID tokens' iss
//                                 are the literal `{authority}/{tenantid}/v2.0` (Entra's
//                                 multi-tenant quirk); the relying party must refuse it.
//   tenant.hide_signing_key       the JWKS publishes another RSA public key (another kid)
//                                 instead of the signing key.
//   tenant.access_token_ttl       access token lifetime, echoed as expires_in.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { promisify } from 'node:util';

// stdout carries the ready line only: oidc-provider prints notices with console.info.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

const { default: Provider } = await import('oidc-provider');

const log = (message) => process.stderr.write(`[oidc-provider] ${message}\n`);

const SCOPES = ['openid', 'profile', 'email', 'offline_access', 'User.Read'];
const DEFAULT_TTL = 3600;
const DEFAULT_REFRESH_TTL = 90 * 24 * 3600;

function fail(message) {
  log(`error: ${message}`);
  process.exit(2);
}

function readConfig(path) {
  if (!path) fail('usage: node server.mjs CONFIG.json');
  let config;
  try {
    config = JSON.parse(fs.readFileSync(path, 'utf8'));
  } catch (err) {
    fail(`reading ${path}: ${err.message}`);
  }
  if (!Array.isArray(config.tenants) || config.tenants.length === 0) {
    fail('config.tenants must be a non-empty array');
  }
  const seen = new Set();
  for (const tenant of config.tenants) {
    if (typeof tenant.tid !== 'string' || !/^[A-Za-z0-9._-]+$/.test(tenant.tid)) {
      fail(`tenant tid must be a plain string, got ${JSON.stringify(tenant.tid)}`);
    }
    if (seen.has(tenant.tid)) fail(`tenant ${tenant.tid} is listed twice`);
    seen.add(tenant.tid);
    for (const user of tenant.users ?? []) {
      if (typeof user.login_hint !== 'string' || typeof user.oid !== 'string') {
        fail(`tenant ${tenant.tid}: every user needs login_hint and oid`);
      }
    }
    for (const client of tenant.clients ?? []) {
      if (typeof client.client_id !== 'string' || !Array.isArray(client.redirect_uris)) {
        fail(`tenant ${tenant.tid}: every client needs client_id and redirect_uris`);
      }
    }
  }
  return config;
}

const ttlOf = (value, fallback) => (Number.isInteger(value) && value > 0 ? value : fallback);

// oidc-provider's own memory adapter shares one store (of 1000 entries) between every
// Provider of the process; each tenant gets a store of its own instead.
class MapAdapter {
  constructor(model, store) {
    this.model = model;
    this.store = store;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  read(key) {
    const entry = this.store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      this.store.delete(key);
      return undefined;
    }
    return entry.value;
  }

  write(key, value, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
    this.store.set(key, { value, expiresAt });
  }

  async upsert(id, payload, expiresIn) {
    this.write(this.key(id), payload, expiresIn);
    if (payload.grantId) {
      const grantKey = `grant:${payload.grantId}`;
      const members = this.store.get(grantKey)?.value ?? new Set();
      members.add(this.key(id));
      this.store.set(grantKey, { value: members });
    }
    if (this.model === 'Session' && payload.uid) {
      this.write(`sessionUid:${payload.uid}`, id, expiresIn);
    }
    if (payload.userCode) {
      this.write(`userCode:${payload.userCode}`, id, expiresIn);
    }
  }

  async find(id) {
    return this.read(this.key(id));
  }

  async findByUid(uid) {
    const id = this.read(`sessionUid:${uid}`);
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = this.read(`userCode:${userCode}`);
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const payload = this.read(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    this.store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    const grantKey = `grant:${grantId}`;
    for (const key of this.store.get(grantKey)?.value ?? []) {
      this.store.delete(key);
    }
    this.store.delete(grantKey);
  }
}

const generateKeyPair = promisify(crypto.generateKeyPair);

async function rsaJwk(kidPrefix) {
  const { privateKey } = await generateKeyPair('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    ...jwk,
    kid: `${kidPrefix}-${crypto.randomBytes(6).toString('hex')}`,
    alg: 'RS256',
    use: 'sig',
  };
}

const publicJwk = ({ kty, n, e, kid, alg, use }) => ({ kty, n, e, kid, alg, use });

// Claims by scope. Entra puts tid, oid and groups in every ID token of the app (groups
// through the app's configuration, not a scope), name and preferred_username with
// `profile`, email with `email`.
const CLAIMS = {
  acr: null,
  auth_time: null,
  iss: null,
  sid: null,
  openid: ['sub', 'tid', 'oid', 'groups', 'xms_edov'],
  profile: ['name', 'preferred_username'],
  email: ['email'],
};

function accountClaims(tenant, user) {
  const claims = {
    sub: user.oid,
    oid: user.oid,
    tid: user.tid ?? tenant.tid,
    name: user.name ?? user.login_hint,
    email: user.email ?? user.login_hint,
    preferred_username: user.email ?? user.login_hint,
  };
  if (user.groups_overage) {
    // Entra's "groups overage": too many groups for a token; ask Microsoft Graph.
    claims._claim_names = { groups: 'src1' };
    claims._claim_sources = {
      src1: { endpoint: `https://graph.microsoft.com/v1.0/users/${user.oid}/getMemberObjects` },
    };
  } else if (Array.isArray(user.groups)) {
    claims.groups = user.groups;
  }
  if (typeof user.xms_edov === 'boolean') {
    claims.xms_edov = user.xms_edov;
  }
  return claims;
}

async function buildTenant(tenant, index, authority) {
  const prefix = `/${tenant.tid}/v2.0`;
  const issuer = tenant.literal_tenantid_issuer
    ? `${authority}/{tenantid}/v2.0`
    : `${authority}${prefix}`;
  const users = tenant.users ?? [];
  const byHint = new Map(users.map((u) => [u.login_hint.toLowerCase(), u]));
  const byOid = new Map(users.map((u) => [u.oid, u]));
  if (byOid.size !== users.length) log(`warning: tenant ${tenant.tid} has users sharing an oid`);

  const [signingKey, decoyKey] = await Promise.all([
    rsaJwk('sig'),
    tenant.hide_signing_key ? rsaJwk('decoy') : Promise.resolve(undefined),
  ]);

  const store = new Map();
  const refreshTtl = ttlOf(tenant.refresh_token_ttl, DEFAULT_REFRESH_TTL);
  const provider = new Provider(issuer, {
    adapter: (model) => new MapAdapter(model, store),
    clients: (tenant.clients ?? []).map((c) => ({
      client_id: c.client_id,
      redirect_uris: c.redirect_uris,
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token'],
      ...(c.client_secret
        ? { client_secret: c.client_secret, token_endpoint_auth_method: 'client_secret_post' }
        : { token_endpoint_auth_method: 'none' }),
    })),
    clientAuthMethods: ['none', 'client_secret_basic', 'client_secret_post'],
    jwks: { keys: [signingKey] },
    async findAccount(_ctx, id) {
      const user = byOid.get(id);
      if (!user) return undefined;
      return { accountId: id, claims: async () => accountClaims(tenant, user) };
    },
    claims: CLAIMS,
    scopes: SCOPES,
    responseTypes: ['code'],
    pkce: { required: () => true },
    conformIdTokenClaims: false,
    rotateRefreshToken: true,
    features: {
      devInteractions: { enabled: false },
      // Entra has no pushed authorization requests endpoint.
      pushedAuthorizationRequests: { enabled: false },
    },
    interactions: {
      url: (_ctx, interaction) => `${prefix}/interaction/${interaction.uid}`,
    },
    cookies: {
      // One host serves every tenant: distinct names keep their cookies apart even in a
      // cookie jar that ignores paths.
      names: {
        session: `_session_t${index}`,
        interaction: `_interaction_t${index}`,
        resume: `_interaction_resume_t${index}`,
      },
      keys: [crypto.randomBytes(32).toString('hex')],
    },
    ttl: {
      AccessToken: ttlOf(tenant.access_token_ttl, DEFAULT_TTL),
      IdToken: ttlOf(tenant.id_token_ttl, DEFAULT_TTL),
      RefreshToken: refreshTtl,
      Grant: refreshTtl,
      Session: refreshTtl,
      AuthorizationCode: 600,
      Interaction: 600,
    },
    async renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error']) {
    provider.on(event, (_ctx, err) => {
      log(`tenant ${tenant.tid} ${event}: ${err.error ?? err.name}: ${err.error_description ?? err.message}`);
    });
  }

  return {
    tid: tenant.tid,
    prefix,
    provider,
    callback: provider.callback(),
    byHint,
    decoyJwks: decoyKey ? JSON.stringify({ keys: [publicJwk(decoyKey)] }) : undefined,
  };
}

// The provider signs the login_hint user in and grants what was asked, without pages.
async function interaction(tenant, req, res) {
  const { provider, byHint } = tenant;
  const details = await provider.interactionDetails(req, res);
  const { params } = details;
  const hint = typeof params.login_hint === 'string' ? params.login_hint : undefined;
  const user = hint ? byHint.get(hint.toLowerCase()) : undefined;
  if (!user) {
    log(`tenant ${tenant.tid}: ${hint ? 'unknown' : 'missing'} login_hint, access denied`);
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: hint ? 'unknown login_hint' : 'login_hint is required',
    }, { mergeWithLastSubmission: false });
    return;
  }
  const grant = new provider.Grant({ accountId: user.oid, clientId: params.client_id });
  if (params.scope) grant.addOIDCScope(params.scope);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, {
    login: { accountId: user.oid, amr: ['pwd'] },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

// GET authorization requests: every one signs in (prompt login consent, see the top),
// and the nonce is swapped for a user with `tamper_nonce`.
function rewriteAuthorization(tenant, search) {
  const query = new URLSearchParams(search);
  const prompts = new Set((query.get('prompt') ?? '').split(' ').filter(Boolean));
  if (!prompts.has('none')) {
    prompts.add('login');
    prompts.add('consent');
    query.set('prompt', [...prompts].join(' '));
  }
  const hint = query.get('login_hint');
  const user = hint ? tenant.byHint.get(hint.toLowerCase()) : undefined;
  if (user?.tamper_nonce) {
    query.set('nonce', `tampered-${crypto.randomBytes(12).toString('hex')}`);
  }
  const text = query.toString();
  return text ? `?${text}` : '';
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function dispatcher(tenants, authority) {
  return (req, res) => {
    let url;
    try {
      url = new URL(req.url, authority);
    } catch {
      sendJson(res, 400, { error: 'invalid_request', error_description: 'bad request target' });
      return;
    }
    res.on('finish', () => log(`${req.method} ${url.pathname} ${res.statusCode}`));
    const tenant = tenants.find(
      (t) => url.pathname === t.prefix || url.pathname.startsWith(`${t.prefix}/`),
    );
    if (!tenant) {
      sendJson(res, 404, { error: 'not_found', error_description: 'no such tenant' });
      return;
    }
    const rest = url.pathname.slice(tenant.prefix.length) || '/';
    if (rest.startsWith('/interaction/')) {
      interaction(tenant, req, res).catch((err) => {
        log(`tenant ${tenant.tid} interaction failed: ${err.name}: ${err.error_description ?? err.message}`);
        if (!res.headersSent) {
          sendJson(res, 400, { error: err.error ?? 'invalid_request', error_description: err.error_description ?? err.message });
        }
      });
      return;
    }
    if (req.method === 'GET' && rest === '/jwks' && tenant.decoyJwks) {
      res.writeHead(200, { 'content-type': 'application/jwk-set+json; charset=utf-8' });
      res.end(tenant.decoyJwks);
      return;
    }
    const search = req.method === 'GET' && rest === '/auth'
      ? rewriteAuthorization(tenant, url.search)
      : url.search;
    // Mounted as Express would: oidc-provider builds its URLs from originalUrl/baseUrl.
    req.url = `${rest}${search}`;
    req.originalUrl = `${tenant.prefix}${req.url}`;
    req.baseUrl = tenant.prefix;
    tenant.callback(req, res);
  };
}

async function main() {
  const config = readConfig(process.argv[2]);
  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number.isInteger(config.port) ? config.port : 0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  const authority = `http://127.0.0.1:${port}`;
  const tenants = await Promise.all(
    config.tenants.map((tenant, index) => buildTenant(tenant, index, authority)),
  );
  server.on('request', dispatcher(tenants, authority));
  server.on('error', (err) => log(`server error: ${err.message}`));

  const shutdown = (why) => {
    log(`stopping (${why})`);
    process.exit(0);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.stdin.on('end', () => shutdown('stdin closed'));
  process.stdin.on('close', () => shutdown('stdin closed'));
  process.stdin.on('error', () => shutdown('stdin error'));
  process.stdin.resume();

  log(`listening on ${authority} for tenants ${tenants.map((t) => t.tid).join(', ')}`);
  process.stdout.write(`${JSON.stringify({ ready: true, port, authority })}\n`);
}

main().catch((err) => fail(err.stack ?? String(err)));
