// Sign-up and login with OPAQUE (@serenity-kit/opaque, the KSF defaults the server expects).
// The OPAQUE package (WebAssembly, ~600 kB) loads on first use, so the app shell starts fast.
// The exportKey seals (sign-up) or opens (login) the key bundle; it never leaves this module.

import type { Api } from './api';
import { ApiError } from './api';
import { b64decode, b64encode } from './bytes';
import { type KeyRing, generateSecrets, importGeneration, openKeyRing, publicKeysOf, sealBundle, wipe } from './crypto';
import type { Me, Tokens } from './types';

export interface Session extends Tokens {
  user: Me;
  ring: KeyRing;
}

type Opaque = typeof import('@serenity-kit/opaque');
let loaded: Promise<Opaque> | null = null;

async function opaqueClient(): Promise<Opaque['client']> {
  loaded ??= import('@serenity-kit/opaque');
  const opaque = await loaded;
  await opaque.ready;
  return opaque.client;
}

const USERNAME = /^[A-Za-z0-9_.-]{3,32}$/;

export function validateCredentials(username: string, password: string): string | null {
  if (!USERNAME.test(username)) return 'Usernames are 3 to 32 letters, digits, dots, dashes or underscores.';
  if (password.length < 8) return 'Passwords have at least 8 characters.';
  return null;
}

function exportKeyBytes(exportKey: string): Uint8Array {
  const b = b64decode(exportKey);
  if (!b) throw new ApiError('INTERNAL', 'OPAQUE gave an exportKey that is not base64url');
  return b;
}

/** Registers a new account with a fresh key generation, then logs in. */
export async function signUp(api: Api, username: string, password: string): Promise<Session> {
  const opaque = await opaqueClient();
  const { clientRegistrationState, registrationRequest } = opaque.startRegistration({ password });
  const { registrationResponse } = (
    await api.raw<{ registrationResponse: string }>('POST', '/auth/register/start', { username, registrationRequest }, null)
  ).data;
  const { registrationRecord, exportKey } = opaque.finishRegistration({
    clientRegistrationState,
    registrationResponse,
    password,
  });
  const secrets = generateSecrets();
  const ek = exportKeyBytes(exportKey);
  try {
    const pub = publicKeysOf(secrets);
    const keyBundle = b64encode(await sealBundle(ek, [secrets]));
    await api.raw('POST', '/auth/register/finish', {
      username,
      registrationRecord,
      publicIdKey: b64encode(pub.idKey),
      publicSigningKey: b64encode(pub.signingKey),
      keyBundle,
    }, null);
    const ring = { generations: [await importGeneration(secrets)] };
    const { exportKey: loginKey, ...tokens } = await finishLogin(api, username, password);
    loginKey.fill(0);
    return { ...tokens, ring };
  } finally {
    wipe(secrets);
    ek.fill(0);
  }
}

interface LoginResult extends Tokens {
  user: Me;
  exportKey: Uint8Array;
}

async function finishLogin(api: Api, username: string, password: string): Promise<LoginResult> {
  const opaque = await opaqueClient();
  const { clientLoginState, startLoginRequest } = opaque.startLogin({ password });
  const start = (
    await api.raw<{ loginId: string; loginResponse: string }>('POST', '/auth/login/start', { username, startLoginRequest }, null)
  ).data;
  const finished = opaque.finishLogin({ clientLoginState, loginResponse: start.loginResponse, password });
  if (!finished) throw new ApiError('UNAUTHENTICATED', 'Wrong username or password.', 401);
  const res = (
    await api.raw<Tokens & { user: Me }>('POST', '/auth/login/finish', {
      loginId: start.loginId,
      finishLoginRequest: finished.finishLoginRequest,
    }, null)
  ).data;
  api.setToken(res.accessToken);
  return { accessToken: res.accessToken, expiresIn: res.expiresIn, user: res.user, exportKey: exportKeyBytes(finished.exportKey) };
}

/** Logs in and opens the key bundle with the exportKey. */
export async function logIn(api: Api, username: string, password: string): Promise<Session> {
  const res = await finishLogin(api, username, password);
  try {
    const { keyBundle } = await api.get<{ keyBundle: string }>('/users/me/key-bundle');
    const sealed = b64decode(keyBundle);
    if (!sealed) throw new ApiError('INVALID_INPUT', 'The server sent a key bundle that is not base64url');
    const ring = await openKeyRing(res.exportKey, sealed);
    return { accessToken: res.accessToken, expiresIn: res.expiresIn, user: res.user, ring };
  } finally {
    res.exportKey.fill(0);
  }
}
