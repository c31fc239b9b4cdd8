// The REST client: the error envelope, refresh on 401 (once, never two refreshes at a time), session expiry.
import { describe, expect, it, vi } from 'vitest';
import { Api, ApiError } from './api';

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
const err = (status: number, code: string) => json(status, { success: false, error: { code, message: code, statusCode: status } });

describe('Api', () => {
  it('refreshes the access token on a 401 and retries once', async () => {
    const seen: string[] = [];
    const fetch = vi.fn(async (url: string | URL | Request, init?: RequestInit) => {
      const auth = new Headers(init?.headers).get('authorization') ?? '';
      seen.push(`${String(url)} ${auth}`);
      if (String(url).endsWith('/auth/refresh')) return json(200, { success: true, data: { accessToken: 'new', expiresIn: 900 } });
      return auth === 'Bearer new' ? json(200, { success: true, data: { ok: 1 } }) : err(401, 'TOKEN_EXPIRED');
    });
    const onTokens = vi.fn();
    const api = new Api({ fetch: fetch as typeof globalThis.fetch, onTokens });
    api.setToken('old');
    // Two requests fail at once: one refresh serves both.
    const [a, b] = await Promise.all([api.get('/users/me'), api.get('/chats')]);
    expect(a).toEqual({ ok: 1 });
    expect(b).toEqual({ ok: 1 });
    expect(seen.filter((s) => s.includes('/auth/refresh'))).toHaveLength(1);
    expect(onTokens).toHaveBeenCalledWith({ accessToken: 'new', expiresIn: 900 });
  });

  it('reports an expired session once the refresh token is refused', async () => {
    const fetch = vi.fn(async () => err(401, 'INVALID_TOKEN'));
    const onSessionExpired = vi.fn();
    const api = new Api({ fetch: fetch as typeof globalThis.fetch, onSessionExpired });
    api.setToken('old');
    await expect(api.get('/users/me')).rejects.toMatchObject({ code: 'SESSION_EXPIRED' });
    expect(onSessionExpired).toHaveBeenCalledTimes(1);
  });

  it('turns the error envelope, a network failure and a non-JSON 502 into stable codes', async () => {
    const responses = [
      err(409, 'CONFLICT'),
      Promise.reject(new TypeError('Failed to fetch')),
      new Response('<html>bad gateway</html>', { status: 502 }),
    ];
    const fetch = vi.fn(async () => responses.shift());
    const api = new Api({ fetch: fetch as unknown as typeof globalThis.fetch });
    await expect(api.post('/chats', {})).rejects.toMatchObject({ code: 'CONFLICT', status: 409 });
    await expect(api.post('/chats', {})).rejects.toMatchObject({ code: 'NETWORK' });
    const e = await api.post('/chats', {}).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ApiError);
    expect((e as ApiError).code).toBe('NETWORK');
  });
});
