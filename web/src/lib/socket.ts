// The Socket.IO client's options: how the engine connects and reconnects. Kept apart from the
// engine so that a unit test can check them (and how socket.io-client reads them) without a
// browser.
import type { ManagerOptions, Socket, SocketOptions } from 'socket.io-client';

/** First and largest pause between reconnection attempts; each pause is randomized by ±50 %. */
export const RECONNECT_DELAY_MS = 500;
export const RECONNECT_DELAY_MAX_MS = 5_000;

/**
 * Options for `io()`: both transports, the access token read afresh on every (re)connection, and
 * reconnection that never gives up, with randomized exponential backoff so that clients cut off
 * together do not all come back in the same instant.
 */
export function socketOptions(token: () => string): Partial<ManagerOptions & SocketOptions> {
  return {
    path: '/socket.io/',
    transports: ['polling', 'websocket'],
    auth: (cb) => cb({ token: token() }),
    reconnection: true,
    reconnectionAttempts: Infinity,
    reconnectionDelay: RECONNECT_DELAY_MS,
    reconnectionDelayMax: RECONNECT_DELAY_MAX_MS,
    randomizationFactor: 0.5,
  };
}

/** Attempts after which the count starts again, long before socket.io-client's backoff overflows. */
export const RESTART_BACKOFF_AFTER = 30;

/**
 * A connection attempt now: closes the manager, which cancels a pending backoff pause (during
 * one, `connect()` alone does nothing), and opens it again. A failure starts the backoff afresh.
 */
export function reconnectNow(socket: Socket): void {
  if (socket.connected) return;
  socket.disconnect();
  socket.connect();
}

/**
 * Keeps the pauses between attempts bounded however long the server stays away. socket.io-client
 * computes a pause as `delay × 2^attempts` before it caps it: after about a thousand attempts
 * that is Infinity, half of the randomized pauses come out NaN, which is no pause at all, and the
 * client would hammer the server. Starting the count again every `after` attempts avoids it.
 */
export function restartBackoffEvery(socket: Socket, after = RESTART_BACKOFF_AFTER): void {
  socket.io.on('reconnect_attempt', (attempt) => {
    if (attempt >= after) reconnectNow(socket);
  });
}
