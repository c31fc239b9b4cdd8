// Wire-compatibility test: the real npm client `@serenity-kit/opaque` 1.x registers and logs in
// to a RUNNING Jibber server over its REST API (see shared/API.md and notes/opaque.md).
//
// Run:  JIBBER_URL=http://127.0.0.1:18080 npm test
//
// Top-level tests in one file run one after another; each test that needs an account awaits the
// shared registration below, so any single test can also be run on its own (--test-name-pattern).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as opaque from '@serenity-kit/opaque';

const REQUEST_TIMEOUT_MS = 15_000;
const B64URL = /^[A-Za-z0-9_-]+$/; // base64url WITHOUT padding

/** The server base URL, or a clear failure (never a skip) when JIBBER_URL is not set. */
function baseUrl() {
  const url = process.env.JIBBER_URL;
  if (!url || !url.trim()) {
    throw new Error(
      'JIBBER_URL is not set: start a Jibber server and run e.g. ' +
        '`JIBBER_URL=http://127.0.0.1:18080 npm test` in tests/node',
    );
  }
  return url.trim().replace(/\/+$/, '');
}

const b64url = (bytes) => Buffer.from(bytes).toString('base64url');
const decodedLength = (s) => Buffer.from(s, 'base64url').length;
const randomKey = (n) => b64url(randomBytes(n));
const freshUsername = () => `node${randomBytes(8).toString('hex')}`; // 20 letters/digits
const freshPassword = () => `pw-${randomBytes(12).toString('base64url')}`;

function assertB64url(value, name, bytes) {
  assert.equal(typeof value, 'string', `${name} must be a string`);
  assert.match(value, B64URL, `${name} must be base64url without padding`);
  if (bytes !== undefined) {
    assert.equal(decodedLength(value), bytes, `${name} must decode to ${bytes} bytes`);
  }
}

/**
 * One JSON request to the API. Returns {status, headers, body}; the body is the parsed JSON
 * envelope (or null for an empty body).
 */
async function api(method, path, { json, token } = {}) {
  const url = `${baseUrl()}/api/v1${path}`;
  const headers = { accept: 'application/json' };
  if (json !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(url, {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (err) {
    throw new Error(`${method} ${url}: could not reach the Jibber server (${err.cause?.code ?? err.message})`, {
      cause: err,
    });
  }
  const text = await res.text();
  let body = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`${method} ${path}: HTTP ${res.status}, body is not JSON: ${text.slice(0, 500)}`);
    }
  }
  return { status: res.status, headers: res.headers, body };
}

/** Asserts a success envelope with the given status and returns its `data`. */
function expectOk(res, status, what) {
  const detail = `${what}: HTTP ${res.status} ${JSON.stringify(res.body)}`;
  assert.equal(res.status, status, detail);
  assert.equal(res.body?.success, true, detail);
  assert.ok('data' in res.body, `${detail} (no data)`);
  return res.body.data;
}

/** Asserts a failure envelope with the given status and error code. */
function expectError(res, status, code, what) {
  const detail = `${what}: HTTP ${res.status} ${JSON.stringify(res.body)}`;
  assert.equal(res.status, status, detail);
  assert.equal(res.body?.success, false, detail);
  assert.equal(res.body?.error?.code, code, detail);
  assert.equal(res.body?.error?.statusCode, status, detail);
}

/** The attributes of the `jibber_refresh` Set-Cookie header, or undefined if none was set. */
function refreshCookie(headers) {
  const raw = headers.getSetCookie().find((c) => c.startsWith('jibber_refresh='));
  if (!raw) return undefined;
  const [pair, ...attrs] = raw.split(';').map((s) => s.trim());
  const value = pair.slice('jibber_refresh='.length);
  const attributes = new Map(
    attrs.map((a) => {
      const i = a.indexOf('=');
      return i < 0 ? [a.toLowerCase(), true] : [a.slice(0, i).toLowerCase(), a.slice(i + 1)];
    }),
  );
  return { raw, value, attributes };
}

// ---------------------------------------------------------------------------------------------
// Flows

async function register(username, password) {
  await opaque.ready;
  const { clientRegistrationState, registrationRequest } = opaque.client.startRegistration({ password });
  assertB64url(registrationRequest, 'registrationRequest', 32);

  const start = expectOk(
    await api('POST', '/auth/register/start', { json: { username, registrationRequest } }),
    200,
    'register/start',
  );
  assertB64url(start.registrationResponse, 'registrationResponse', 64);

  const { registrationRecord, exportKey } = opaque.client.finishRegistration({
    clientRegistrationState,
    registrationResponse: start.registrationResponse,
    password,
  });
  assertB64url(registrationRecord, 'registrationRecord', 192);
  assertB64url(exportKey, 'exportKey', 64);

  const publicIdKey = randomKey(32);
  const publicSigningKey = randomKey(32);
  const keyBundle = randomKey(64);
  const finish = expectOk(
    await api('POST', '/auth/register/finish', {
      json: { username, registrationRecord, publicIdKey, publicSigningKey, keyBundle },
    }),
    201,
    'register/finish',
  );
  return { username, password, exportKey, publicIdKey, publicSigningKey, keyBundle, user: finish.user };
}

/** POST login/start; returns the client state with the server's answer. */
async function loginStart(username, password) {
  await opaque.ready;
  const { clientLoginState, startLoginRequest } = opaque.client.startLogin({ password });
  assertB64url(startLoginRequest, 'startLoginRequest', 96);
  const data = expectOk(
    await api('POST', '/auth/login/start', { json: { username, startLoginRequest } }),
    200,
    'login/start',
  );
  assert.equal(typeof data.loginId, 'string', 'login/start: loginId must be a string');
  assert.ok(data.loginId.length > 0, 'login/start: loginId must not be empty');
  assertB64url(data.loginResponse, 'loginResponse');
  return { clientLoginState, loginId: data.loginId, loginResponse: data.loginResponse };
}

/** A full, successful login; returns the client's OPAQUE result, the tokens and the response. */
async function login(username, password) {
  const { clientLoginState, loginId, loginResponse } = await loginStart(username, password);
  assertB64url(loginResponse, 'loginResponse', 320);
  const result = opaque.client.finishLogin({ clientLoginState, loginResponse, password });
  assert.ok(result, 'client.finishLogin returned undefined for the right password');
  const res = await api('POST', '/auth/login/finish', {
    json: { loginId, finishLoginRequest: result.finishLoginRequest },
  });
  const data = expectOk(res, 200, 'login/finish');
  return { result, data, res, loginId };
}

// One account shared by the tests, registered once (by test a, or by whichever test runs first).
let registration;
function registeredAccount() {
  registration ??= register(freshUsername(), freshPassword());
  return registration;
}
async function account() {
  try {
    return await registeredAccount();
  } catch (err) {
    throw new Error(`registration of the test account failed, so this test cannot run: ${err.message}`, {
      cause: err,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Tests

test('JIBBER_URL is set and the server answers', async () => {
  const res = await api('GET', '/health');
  assert.ok(res.status === 200 || res.status === 503, `GET /health: HTTP ${res.status}`);
});

test('a. register a fresh user with @serenity-kit/opaque', async () => {
  const acct = await registeredAccount();
  assert.ok(acct.user, 'register/finish: data.user is missing');
  assert.equal(acct.user.username, acct.username);
  assert.equal(typeof acct.user.id, 'string');

  // The username is now taken.
  await opaque.ready;
  const { registrationRequest } = opaque.client.startRegistration({ password: freshPassword() });
  expectError(
    await api('POST', '/auth/register/start', { json: { username: acct.username, registrationRequest } }),
    409,
    'CONFLICT',
    'register/start with a taken username',
  );
});

test('b. log in: same exportKey, tokens, refresh cookie, /users/me', async () => {
  const acct = await account();
  const { result, data, res, loginId } = await login(acct.username, acct.password);

  assertB64url(result.finishLoginRequest, 'finishLoginRequest', 64);
  assertB64url(result.sessionKey, 'sessionKey', 64);
  assertB64url(result.exportKey, 'exportKey', 64);
  assert.equal(result.exportKey, acct.exportKey, 'exportKey at login must equal the one from registration');

  assert.equal(typeof data.accessToken, 'string');
  assert.ok(data.accessToken.length > 0, 'accessToken must not be empty');
  assert.equal(typeof data.refreshToken, 'string');
  assert.ok(data.refreshToken.length > 0, 'refreshToken must not be empty');
  assert.equal(typeof data.expiresIn, 'number');
  assert.ok(data.expiresIn > 0, 'expiresIn must be positive');
  assert.equal(data.user?.id, acct.user.id);
  assert.equal(data.user?.username, acct.username);

  const cookie = refreshCookie(res.headers);
  assert.ok(cookie, `login/finish must set the jibber_refresh cookie; Set-Cookie: ${JSON.stringify(res.headers.getSetCookie())}`);
  assert.equal(cookie.attributes.get('httponly'), true, `jibber_refresh must be HttpOnly: ${cookie.raw}`);
  assert.equal(String(cookie.attributes.get('samesite')).toLowerCase(), 'strict', `jibber_refresh must be SameSite=Strict: ${cookie.raw}`);
  assert.equal(cookie.value, data.refreshToken, 'the cookie must carry the same refresh token as the body');

  const me = expectOk(await api('GET', '/users/me', { token: data.accessToken }), 200, 'GET /users/me');
  assert.equal(me.id, acct.user.id);
  assert.equal(me.username, acct.username);

  // The login is spent: replaying the same finish is refused with the generic answer.
  expectError(
    await api('POST', '/auth/login/finish', {
      json: { loginId, finishLoginRequest: result.finishLoginRequest },
    }),
    401,
    'UNAUTHENTICATED',
    'login/finish replayed',
  );
});

test('c. wrong password: client.finishLogin returns undefined', async () => {
  const acct = await account();
  const wrong = `${acct.password}-not`;
  const { clientLoginState, loginId, loginResponse } = await loginStart(acct.username, wrong);
  assertB64url(loginResponse, 'loginResponse', 320); // looks like any other answer
  const result = opaque.client.finishLogin({ clientLoginState, loginResponse, password: wrong });
  assert.equal(result, undefined, 'finishLogin must fail with a wrong password');

  // A client that sends something anyway is refused, with the generic answer.
  expectError(
    await api('POST', '/auth/login/finish', { json: { loginId, finishLoginRequest: randomKey(64) } }),
    401,
    'UNAUTHENTICATED',
    'login/finish with a forged finishLoginRequest',
  );
});

test('d. unknown username: normal-looking loginResponse, finishLogin returns undefined', async () => {
  const acct = await account();
  const real = await loginStart(acct.username, acct.password);

  const unknown = freshUsername();
  const password = freshPassword();
  const { clientLoginState, loginResponse } = await loginStart(unknown, password);
  assert.equal(
    loginResponse.length,
    real.loginResponse.length,
    'loginResponse for an unknown user must be as long as for a real user',
  );
  assert.equal(decodedLength(loginResponse), 320);
  const result = opaque.client.finishLogin({ clientLoginState, loginResponse, password });
  assert.equal(result, undefined, 'finishLogin must fail for an unknown user');
});

test('e. refresh rotates the pair; reuse revokes the whole family', async () => {
  const acct = await account();
  const { data: first } = await login(acct.username, acct.password);

  const res = await api('POST', '/auth/refresh', { json: { refreshToken: first.refreshToken } });
  const second = expectOk(res, 200, 'refresh with a live token');
  assert.equal(typeof second.accessToken, 'string');
  assert.ok(second.accessToken.length > 0);
  assert.equal(typeof second.refreshToken, 'string');
  assert.ok(second.refreshToken.length > 0);
  assert.notEqual(second.refreshToken, first.refreshToken, 'refresh must issue a new refresh token');
  assert.equal(typeof second.expiresIn, 'number');
  assert.ok(second.expiresIn > 0);
  const me = expectOk(await api('GET', '/users/me', { token: second.accessToken }), 200, 'GET /users/me (refreshed)');
  assert.equal(me.id, acct.user.id);

  // Reusing the spent token is refused and signs the family out.
  expectError(
    await api('POST', '/auth/refresh', { json: { refreshToken: first.refreshToken } }),
    401,
    'INVALID_TOKEN',
    'refresh with a spent token',
  );
  const after = await api('POST', '/auth/refresh', { json: { refreshToken: second.refreshToken } });
  assert.equal(after.status, 401, `refresh with the new token after reuse: HTTP ${after.status} ${JSON.stringify(after.body)}`);
  expectError(after, 401, 'INVALID_TOKEN', 'refresh with the new token after reuse');
});
