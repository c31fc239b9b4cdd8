// Shared helpers of the Node wire-compatibility tests: the server URL, JSON requests to the REST
// API with envelope checks, and OPAQUE registration/login with the real npm client
// `@serenity-kit/opaque` 1.x (see shared/API.md and notes/opaque.md).

import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import * as opaque from '@serenity-kit/opaque';

export { opaque };

export const REQUEST_TIMEOUT_MS = 15_000;
export const B64URL = /^[A-Za-z0-9_-]+$/; // base64url WITHOUT padding

/** The server base URL, or a clear failure (never a skip) when JIBBER_URL is not set. */
export function baseUrl() {
  const url = process.env.JIBBER_URL;
  if (!url || !url.trim()) {
    throw new Error(
      'JIBBER_URL is not set: start a Jibber server and run e.g. ' +
        '`JIBBER_URL=http://127.0.0.1:18080 npm test` in tests/node',
    );
  }
  return url.trim().replace(/\/+$/, '');
}

export const b64url = (bytes) => Buffer.from(bytes).toString('base64url');
export const decodedLength = (s) => Buffer.from(s, 'base64url').length;
export const randomKey = (n) => b64url(randomBytes(n));
export const freshUsername = () => `node${randomBytes(8).toString('hex')}`; // 20 letters/digits
export const freshPassword = () => `pw-${randomBytes(12).toString('base64url')}`;

export function assertB64url(value, name, bytes) {
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
export async function api(method, path, { json, token } = {}) {
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
export function expectOk(res, status, what) {
  const detail = `${what}: HTTP ${res.status} ${JSON.stringify(res.body)}`;
  assert.equal(res.status, status, detail);
  assert.equal(res.body?.success, true, detail);
  assert.ok('data' in res.body, `${detail} (no data)`);
  return res.body.data;
}

/** Asserts a failure envelope with the given status and error code. */
export function expectError(res, status, code, what) {
  const detail = `${what}: HTTP ${res.status} ${JSON.stringify(res.body)}`;
  assert.equal(res.status, status, detail);
  assert.equal(res.body?.success, false, detail);
  assert.equal(res.body?.error?.code, code, detail);
  assert.equal(res.body?.error?.statusCode, status, detail);
}

// ---------------------------------------------------------------------------------------------
// Flows

export async function register(username, password) {
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
export async function loginStart(username, password) {
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
export async function login(username, password) {
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

/** A valid sendMessage payload from `from` to `to` in `chatId`. */
export function messagePayload(chatId, from, to, overrides = {}) {
  return {
    chatId,
    receiver: to.id,
    cipher: randomKey(48),
    iv: randomKey(24),
    signature: randomKey(64),
    senderPublicIdKey: from.publicIdKey,
    senderPublicSigningKey: from.publicSigningKey,
    receiverPublicIdKey: to.publicIdKey,
    clientTimestamp: new Date().toISOString(),
    tempMessageId: `tmp-${randomUUID()}`,
    ...overrides,
  };
}
