// The socket's reconnection policy, read back through socket.io-client's own Manager: it never
// stops retrying, and its pauses are randomized and bounded.
import { createServer } from 'node:net';
import { Manager, io } from 'socket.io-client';
import { describe, expect, it } from 'vitest';
import { RECONNECT_DELAY_MAX_MS, RECONNECT_DELAY_MS, reconnectNow, restartBackoffEvery, socketOptions } from './socket';

/** The Manager's backoff, which socket.io-client keeps private. */
interface Backoff {
  attempts: number;
  duration(): number;
}

function manager(): Manager {
  // autoConnect off: nothing is opened, the options are only read.
  return new Manager('http://127.0.0.1:9', { ...socketOptions(() => 'token'), autoConnect: false });
}

describe('socket options', () => {
  it('reconnect forever: no cap on attempts', () => {
    const o = socketOptions(() => '');
    expect(o.reconnection).toBe(true);
    expect(o.reconnectionAttempts).toBe(Infinity);
    const m = manager();
    expect(m.reconnection()).toBe(true);
    expect(m.reconnectionAttempts()).toBe(Infinity);
  });

  it('keep reconnecting after many failed attempts, at most the maximum pause apart', () => {
    const m = manager();
    const backoff = (m as unknown as { backoff: Backoff }).backoff;
    for (let i = 0; i < 25; i++) backoff.duration();
    // What Manager.reconnect() compares before it gives up with "reconnect_failed".
    expect(backoff.attempts < m.reconnectionAttempts()).toBe(true);
    for (let i = 0; i < 20; i++) expect(backoff.duration()).toBe(RECONNECT_DELAY_MAX_MS);
  });

  it('randomize the pauses, within the configured bounds', () => {
    const m = manager();
    expect(m.randomizationFactor()).toBeGreaterThan(0);
    expect(m.reconnectionDelay()).toBe(RECONNECT_DELAY_MS);
    expect(m.reconnectionDelayMax()).toBe(RECONNECT_DELAY_MAX_MS);
    // The first pause of many fresh managers: jittered around the base delay, not all equal.
    const firsts = Array.from({ length: 50 }, () => (manager() as unknown as { backoff: Backoff }).backoff.duration());
    expect(new Set(firsts).size).toBeGreaterThan(5);
    for (const d of firsts) {
      expect(d).toBeGreaterThanOrEqual(RECONNECT_DELAY_MS * 0.5);
      expect(d).toBeLessThanOrEqual(RECONNECT_DELAY_MS * 1.5);
    }
  });

  it('read the access token afresh on every connection', () => {
    let token = 'first';
    const auth = socketOptions(() => token).auth as (cb: (data: object) => void) => void;
    const seen: object[] = [];
    auth((d) => seen.push(d));
    token = 'second';
    auth((d) => seen.push(d));
    expect(seen).toEqual([{ token: 'first' }, { token: 'second' }]);
  });
});

/** A local port with nothing listening: every connection attempt is refused at once. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

describe('reconnecting against a server that stays away', () => {
  it('the attempt count starts again, so it never reaches where the backoff overflows', async () => {
    // socket.io-client's backoff past ~1000 attempts: 500 ms × 2^n is Infinity, and half of the
    // randomized pauses are NaN, i.e. zero. This is why the count must never get there.
    const overflowed = (manager() as unknown as { backoff: Backoff }).backoff;
    overflowed.attempts = 1_100;
    const pauses = Array.from({ length: 40 }, () => overflowed.duration());
    expect(pauses).toContain(0);

    const port = await closedPort();
    const s = io(`http://127.0.0.1:${port}`, {
      ...socketOptions(() => ''),
      transports: ['polling'],
      reconnectionDelay: 1,
      reconnectionDelayMax: 2,
      forceNew: true,
    });
    const after = 5;
    restartBackoffEvery(s, after);
    const attempts: number[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${attempts.length} attempts: ${attempts}`)), 20_000);
        s.io.on('reconnect_attempt', (n) => {
          attempts.push(n);
          if (attempts.length >= 4 * after) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
    } finally {
      s.disconnect();
    }
    // It kept trying, and the count went back to 1 every `after` attempts.
    expect(Math.max(...attempts)).toBe(after);
    expect(attempts.slice(0, 2 * after)).toEqual([1, 2, 3, 4, 5, 1, 2, 3, 4, 5]);
  });

  it('reconnectNow tries at once instead of waiting out the pause', async () => {
    const port = await closedPort();
    const s = io(`http://127.0.0.1:${port}`, {
      ...socketOptions(() => ''),
      transports: ['polling'],
      // A pause long enough that only reconnectNow can bring the next attempt within the test.
      reconnectionDelay: 600_000,
      reconnectionDelayMax: 600_000,
      forceNew: true,
    });
    try {
      const errors = () =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no connection attempt')), 10_000);
          s.once('connect_error', () => {
            clearTimeout(timer);
            resolve();
          });
        });
      await errors();
      // Now the manager waits out its (10-minute) pause: connect() alone does nothing...
      const before = errors();
      s.connect();
      await expect(Promise.race([before, new Promise((r) => setTimeout(() => r('waiting'), 300))])).resolves.toBe('waiting');
      // ...and reconnectNow makes an attempt at once.
      reconnectNow(s);
      await before;
    } finally {
      s.disconnect();
    }
  });
});
