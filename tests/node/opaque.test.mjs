// Wire-compatibility test: the real npm client `@serenity-kit/opaque` 1.x registers and logs in
// to a RUNNING Jibber server over its REST API (see shared/API.md and notes/opaque.md).
//
// Run:  JIBBER_URL=http://127.0.0.1:18080 npm test
//
// Top-level tests in one file run one after another; each test that needs an account awaits the
// shared registration below, so any single test can also be run on its own (--test-name-pattern).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  api,
  assertB64url,
  decodedLength,
  expectError,
  expectOk,
  freshPassword,
  freshUsername,
  login,
  loginStart,
  opaque,
  randomKey,
  register,
} from './helpers.mjs';

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
