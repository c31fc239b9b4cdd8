// REST client for /api/v1: the error envelope, the bearer token, and access-token refresh on
// any 401 (once per request, one refresh at a time across the app's tabs).

import type { Pagination, Tokens } from './types';

export const API = '/api/v1';

/** An error with a stable code: the server's ErrorCode, or NETWORK / SESSION_EXPIRED. */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 0,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const isNetworkError = (e: unknown): boolean => e instanceof ApiError && e.code === 'NETWORK';

interface Envelope<T> {
  success: boolean;
  data: T;
  pagination?: Pagination;
  error?: { code: string; message: string; statusCode: number };
}

export interface Page<T> {
  data: T;
  pagination?: Pagination;
}

type Fetch = typeof fetch;

export interface ApiOptions {
  fetch?: Fetch;
  base?: string;
  /** Called once when the refresh token is no longer accepted: the user has to log in again. */
  onSessionExpired?: () => void;
  /** Called with every new access token (the socket sends it in band). */
  onTokens?: (t: Tokens) => void;
}

export class Api {
  private token: string | null = null;
  private refreshing: Promise<Tokens> | null = null;
  private readonly fetcher: Fetch;
  private readonly base: string;

  constructor(private readonly opts: ApiOptions = {}) {
    this.fetcher = opts.fetch ?? ((...a) => globalThis.fetch(...a));
    this.base = opts.base ?? '';
  }

  setToken(token: string | null): void {
    this.token = token;
  }

  get accessToken(): string | null {
    return this.token;
  }

  /** One request, no refresh. */
  async raw<T>(method: string, path: string, body?: unknown, token = this.token): Promise<Page<T>> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    let res: Response;
    try {
      res = await this.fetcher(`${this.base}${API}${path}`, {
        method,
        headers,
        credentials: 'same-origin',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError('NETWORK', `The server cannot be reached (${(e as Error).message})`);
    }
    let json: Envelope<T> | null = null;
    try {
      json = (await res.json()) as Envelope<T>;
    } catch {
      // Not JSON: a proxy's error page, or the server is restarting.
    }
    if (!res.ok || !json?.success) {
      const retry = Number(res.headers.get('Retry-After'));
      if (!json?.error) {
        throw new ApiError(res.status >= 500 ? 'NETWORK' : 'INTERNAL', `The server answered ${res.status}`, res.status);
      }
      throw new ApiError(json.error.code, json.error.message, res.status, retry > 0 ? retry * 1000 : undefined);
    }
    return { data: json.data, pagination: json.pagination };
  }

  /** An authenticated request: on a 401 it refreshes the access token once and tries again. */
  async call<T>(method: string, path: string, body?: unknown): Promise<Page<T>> {
    try {
      return await this.raw<T>(method, path, body);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) throw e;
      await this.refresh();
      return this.raw<T>(method, path, body);
    }
  }

  async get<T>(path: string): Promise<T> {
    return (await this.call<T>('GET', path)).data;
  }

  async post<T>(path: string, body: unknown = {}): Promise<T> {
    return (await this.call<T>('POST', path, body)).data;
  }

  /**
   * A new access token from the refresh cookie. Refresh tokens are single use (a spent one
   * revokes the family), so refreshes never overlap: one promise in this tab, a Web Lock across tabs.
   */
  refresh(): Promise<Tokens> {
    this.refreshing ??= this.lockedRefresh().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  private async lockedRefresh(): Promise<Tokens> {
    const run = async (): Promise<Tokens> => {
      try {
        const { data } = await this.raw<Tokens>('POST', '/auth/refresh', {}, null);
        this.token = data.accessToken;
        this.opts.onTokens?.(data);
        return data;
      } catch (e) {
        if (e instanceof ApiError && (e.status === 401 || e.status === 400)) {
          this.token = null;
          this.opts.onSessionExpired?.();
          throw new ApiError('SESSION_EXPIRED', 'Your session has expired. Log in again.', 401);
        }
        throw e;
      }
    };
    const locks = typeof navigator !== 'undefined' ? navigator.locks : undefined;
    return locks ? locks.request('jibber-refresh', run) : run();
  }
}
