// Wire-compatibility test of the Socket.IO v4 gateway (shared/API.md, "Realtime: Socket.IO v4")
// with the OFFICIAL client `socket.io-client` 4.x against a RUNNING Jibber server. Every test runs
// twice: once over WebSocket only and once over HTTP long-polling only.
//
// Run:  JIBBER_URL=http://127.0.0.1:18666 node --test realtime.test.mjs
//
// The server must be started with (the Rust harness does this):
//   JIBBER_ACCESS_TOKEN_TTL=4s            required: 3 s to 30 s. Tests "1b" and "5" wait for tokens
//                                         to expire; the TTL is read from the tokens themselves.
//   JIBBER_AUTH_RATE_PER_IP=100000        required: one run registers and logs in ~24 users
//   JIBBER_AUTH_RATE_PER_USERNAME=100000  (about 72 auth attempts from one IP; the default is 30/min).
//   JIBBER_TYPING_TIMEOUT=2s              optional, shortens the run; tell this file the same value
//                                         with JIBBER_TEST_TYPING_TIMEOUT_MS=2000 (default 5000).
// Other settings this file assumes; if the server differs, tell the file:
//   JIBBER_TEST_SOCKET_EVENTS_PER_SECOND  = the server's JIBBER_SOCKET_EVENTS_PER_SECOND (default 20)
//   JIBBER_TEST_MAX_MESSAGE_BYTES         = the server's JIBBER_MAX_MESSAGE_BYTES (default 65536)
//   JIBBER_TEST_TOKEN_LEEWAY_MS           = the server's JWT expiry leeway (5000, fixed in the server)
//   JIBBER_TEST_EVENT_TIMEOUT_MS          = how long to wait for an expected event (default 5000)
//   JIBBER_TEST_TRANSPORTS                = which transports to run (default "websocket,polling")
//
// Every test uses fresh users, so presence and rate limits of one test never reach another.
// Waits are always on events (with a timeout); timers only delay an action (e.g. "send this
// heartbeat after the old token's expiry"), never stand in for an event.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { io } from 'socket.io-client';
import {
  api,
  assertB64url,
  baseUrl,
  expectOk,
  freshPassword,
  freshUsername,
  login,
  messagePayload,
  randomKey,
  register,
} from './helpers.mjs';

function envNumber(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${raw} is not a non-negative number`);
  return n;
}

const EVENT_TIMEOUT_MS = envNumber('JIBBER_TEST_EVENT_TIMEOUT_MS', 5000);
const TYPING_TIMEOUT_MS = envNumber('JIBBER_TEST_TYPING_TIMEOUT_MS', 5000);
const TOKEN_LEEWAY_MS = envNumber('JIBBER_TEST_TOKEN_LEEWAY_MS', 5000);
const EVENTS_PER_SECOND = envNumber('JIBBER_TEST_SOCKET_EVENTS_PER_SECOND', 20);
const MAX_MESSAGE_BYTES = envNumber('JIBBER_TEST_MAX_MESSAGE_BYTES', 65536);
const MAX_SHORT_TTL_S = 30;
const TRANSPORTS = (process.env.JIBBER_TEST_TRANSPORTS ?? 'websocket,polling')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;
const PRESENCE_EVENTS = ['userOnline', 'userOffline', 'userAway', 'userBack'];

function assertUuid(value, name) {
  assert.equal(typeof value, 'string', `${name} must be a string, got ${JSON.stringify(value)}`);
  assert.match(value, UUID, `${name} must be a UUID`);
}

/** Asserts an RFC 3339 time string and returns it in epoch milliseconds. */
function assertTime(value, name) {
  assert.equal(typeof value, 'string', `${name} must be a string, got ${JSON.stringify(value)}`);
  assert.match(value, RFC3339, `${name} must be an RFC 3339 time`);
  const ms = Date.parse(value);
  assert.ok(Number.isFinite(ms), `${name} must parse as a time: ${value}`);
  return ms;
}

const show = (v, max = 300) => {
  const s = JSON.stringify(v, (_k, x) => (typeof x === 'function' ? '[ack]' : x));
  return s && s.length > max ? `${s.slice(0, max)}...` : s;
};

/** The claims of a JWT (not verified: the client only reads `exp` and `iat`). */
function claims(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

/** The token's lifetime in seconds, or a clear failure when it is too long for these tests. */
function shortTtl(token) {
  const { iat, exp } = claims(token);
  const ttl = exp - iat;
  assert.ok(
    ttl > 0 && ttl <= MAX_SHORT_TTL_S,
    `this test needs short-lived access tokens: start the server with e.g. JIBBER_ACCESS_TOKEN_TTL=4s ` +
      `(the server issues tokens that live ${ttl} s; at most ${MAX_SHORT_TTL_S} s is usable here)`,
  );
  return ttl;
}

// ---------------------------------------------------------------------------------------------
// Users and chats over REST

/** A fresh registered and logged-in user. */
async function newUser(label) {
  const username = freshUsername();
  const password = freshPassword();
  let reg;
  let data;
  try {
    reg = await register(username, password);
    ({ data } = await login(username, password));
  } catch (err) {
    throw new Error(`setting up user ${label} failed: ${err.message}`, { cause: err });
  }
  return {
    label,
    id: reg.user.id,
    username,
    publicIdKey: reg.publicIdKey,
    publicSigningKey: reg.publicSigningKey,
    refreshToken: data.refreshToken,
  };
}

/** A newly issued access token for the user (POST /auth/refresh-socket-token; no rotation). */
async function accessToken(user) {
  const data = expectOk(
    await api('POST', '/auth/refresh-socket-token', { json: { refreshToken: user.refreshToken } }),
    200,
    `refresh-socket-token for ${user.label}`,
  );
  assert.equal(typeof data.accessToken, 'string');
  return data.accessToken;
}

/** A new access token through POST /auth/refresh, which rotates the refresh token. */
async function rotateTokens(user) {
  const data = expectOk(
    await api('POST', '/auth/refresh', { json: { refreshToken: user.refreshToken } }),
    200,
    `refresh for ${user.label}`,
  );
  user.refreshToken = data.refreshToken;
  return data.accessToken;
}

/** The 1:1 chat of `a` with `b`, created by `a`; returns its id. */
async function createChat(a, b) {
  const data = expectOk(
    await api('POST', '/chats', { json: { userId: b.id }, token: await accessToken(a) }),
    201,
    `POST /chats (${a.label} with ${b.label})`,
  );
  assertUuid(data.id, 'chat id');
  return data.id;
}

// ---------------------------------------------------------------------------------------------
// Sockets

/** Sockets opened by the running test, and its token-refresh timers; cleared after each test. */
const openSockets = new Set();
const refreshTimers = new Set();

function closeSockets() {
  for (const timer of refreshTimers) clearTimeout(timer);
  refreshTimers.clear();
  for (const socket of openSockets) socket.disconnect();
  openSockets.clear();
}

/** A top-level test of a transport's suite; its sockets are closed when it ends. */
function socketTest(name, fn) {
  test(name, async (t) => {
    try {
      await fn(t);
    } finally {
      closeSockets();
    }
  });
}

/** A new socket (connecting at once). `auth` undefined sends no auth object at all. */
function newSocket(transport, auth) {
  const opts = { transports: [transport], reconnection: false, forceNew: true };
  if (auth !== undefined) opts.auth = auth;
  const socket = io(baseUrl(), opts);
  openSockets.add(socket);
  return socket;
}

/** Resolves with the listener's arguments on the first `event`; rejects after `timeoutMs`. */
function once(socket, event, timeoutMs = EVENT_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, handler);
      reject(new Error(`no "${event}" within ${timeoutMs} ms`));
    }, timeoutMs);
    function handler(...args) {
      clearTimeout(timer);
      resolve(args);
    }
    socket.once(event, handler);
  });
}

/** Resolves on `connect`, rejects on `connect_error` (with its message) or a timeout. */
function handshake(socket, timeoutMs = EVENT_TIMEOUT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no connect within ${timeoutMs} ms`)), timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      reject(new Error(`connect_error: ${err.message}`, { cause: err }));
    });
  });
}

/**
 * Records every event a socket receives (and its disconnect), so a test can wait for an event
 * that may already have arrived. Each recorded event is handed out once.
 */
class Inbox {
  constructor(socket, label) {
    this.socket = socket;
    this.label = label;
    this.entries = [];
    this.waiters = new Set();
    socket.onAny((event, ...args) => this.#push(event, args));
    socket.on('disconnect', (...args) => this.#push('disconnect', args));
  }

  #push(event, args) {
    const entry = { event, args, at: Date.now(), taken: false };
    this.entries.push(entry);
    for (const w of this.waiters) {
      if (w.event === event && w.where(args[0], args)) {
        entry.taken = true;
        this.waiters.delete(w);
        w.resolve(entry);
        return;
      }
    }
  }

  /** Every recorded `event` (taken or not). */
  all(event) {
    return this.entries.filter((e) => e.event === event);
  }

  /** What arrived, for failure messages. */
  summary() {
    if (this.entries.length === 0) return 'nothing';
    return this.entries.map((e) => `${e.event} ${show(e.args, 160)}`).join('; ');
  }

  /**
   * The next `event` whose payload matches `where`: resolves with {payload, args, at}. Rejects
   * after `timeoutMs` with what did arrive.
   */
  next(event, { where = () => true, timeoutMs = EVENT_TIMEOUT_MS, what = '' } = {}) {
    const found = this.entries.find((e) => !e.taken && e.event === event && where(e.args[0], e.args));
    const wrap = (e) => ({ payload: e.args[0], args: e.args, at: e.at });
    if (found) {
      found.taken = true;
      return Promise.resolve(wrap(found));
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        event,
        where,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(wrap(e));
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(
          new Error(
            `${this.label}: no "${event}"${what ? ` (${what})` : ''} within ${timeoutMs} ms; ` +
              `this socket received: ${this.summary()}`,
          ),
        );
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }
}

/** A connected socket with its inbox; checks that it uses the requested transport. */
async function connect(transport, token, label) {
  const socket = newSocket(transport, { token });
  const inbox = new Inbox(socket, label);
  try {
    await handshake(socket);
  } catch (err) {
    throw new Error(`${label}: handshake failed: ${err.message}`, { cause: err });
  }
  assert.equal(socket.io.engine.transport.name, transport, `${label}: connected over the wrong transport`);
  return { socket, inbox };
}

/**
 * Keeps a socket authorised the way a client does: shortly before its token expires, fetches a
 * new access token and sends it with `refreshToken`. (The tests run with short-lived tokens.)
 */
function keepAuthorised(socket, user, token) {
  const schedule = (current) => {
    const timer = setTimeout(async () => {
      refreshTimers.delete(timer);
      if (!socket.connected) return;
      try {
        const fresh = await accessToken(user);
        const answer = await ack(socket, 'refreshToken', { token: fresh });
        if (answer?.ok) schedule(fresh);
        else console.error(`refreshToken for ${user.label} was refused: ${show(answer)}`);
      } catch (err) {
        if (socket.connected) console.error(`refreshing ${user.label}'s socket failed: ${err.message}`);
      }
    }, Math.max(0, claims(current).exp * 1000 - 1500 - Date.now()));
    timer.unref();
    refreshTimers.add(timer);
  };
  schedule(token);
}

/** A connected socket of `user` that stays authorised for the whole test. */
async function connectUser(transport, user, label = user.label) {
  const token = await accessToken(user);
  const conn = await connect(transport, token, label);
  keepAuthorised(conn.socket, user, token);
  return conn;
}

/** Emits `event` with an acknowledgement; resolves with the ack's answer. */
async function ack(socket, event, ...payload) {
  try {
    return await socket.timeout(EVENT_TIMEOUT_MS).emitWithAck(event, ...payload);
  } catch (err) {
    throw new Error(`no acknowledgement of "${event}" within ${EVENT_TIMEOUT_MS} ms (${err.message})`, {
      cause: err,
    });
  }
}

/** Asserts `{ok: true, data}` and returns `data`. */
function okData(answer, what) {
  assert.equal(answer?.ok, true, `${what}: expected {ok: true}, got ${show(answer)}`);
  assert.ok('data' in answer, `${what}: the ack has no data: ${show(answer)}`);
  return answer.data;
}

/** Asserts `{ok: false, error: {code, message, event}}` and returns `error`. */
function refused(answer, code, event, what) {
  assert.equal(answer?.ok, false, `${what}: expected {ok: false}, got ${show(answer)}`);
  assert.equal(answer.error?.code, code, `${what}: ${show(answer)}`);
  assert.equal(typeof answer.error.message, 'string', `${what}: error.message must be a string`);
  assert.equal(answer.error.event, event, `${what}: error.event`);
  return answer.error;
}

/**
 * Expects the handshake to be refused; resolves with the connect_error's message after checking
 * that its `data.code` is the one API.md pairs with that message.
 */
function refusal(transport, auth) {
  const socket = newSocket(transport, auth);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('neither connect nor connect_error')), EVENT_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      reject(new Error(`the handshake with auth ${show(auth)} was accepted`));
    });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      const codes = {
        'No token provided': 'UNAUTHENTICATED',
        'Token expired': 'TOKEN_EXPIRED',
        'Invalid token': 'INVALID_TOKEN',
      };
      if (socket.connected) reject(new Error('connected after connect_error'));
      else if (err.data?.code !== codes[err.message]) {
        reject(new Error(`connect_error "${err.message}" has data ${show(err.data)}, expected code ${codes[err.message]}`));
      } else resolve(err.message);
    });
  });
}

/**
 * Events that must never arrive. `watch` arms a listener; a violation rejects `promise` (which
 * `race` makes every awaited step fail on) and is listed by `check`.
 */
class Tripwire {
  constructor() {
    this.violations = [];
    this.armed = true;
    this.promise = new Promise((_resolve, reject) => {
      this.reject = reject;
    });
    this.promise.catch(() => {});
  }

  watch(socket, label, event, where = () => true) {
    socket.on(event, (...args) => {
      if (!this.armed || !where(args[0])) return;
      const msg = `${label} must not receive "${event}", got ${show(args)}`;
      this.violations.push(msg);
      this.reject(new Error(msg));
    });
  }

  race(promise) {
    return Promise.race([promise, this.promise]);
  }

  disarm() {
    this.armed = false;
  }

  check() {
    assert.deepEqual(this.violations, [], 'events that must not have arrived');
  }
}

// ---------------------------------------------------------------------------------------------
// Tests, once per transport

test('JIBBER_URL is set and the server answers', async () => {
  const res = await api('GET', '/health');
  assert.ok(res.status === 200 || res.status === 503, `GET /health: HTTP ${res.status}`);
});

for (const transport of TRANSPORTS) {
  describe(`realtime over ${transport}`, () => {
    // A token taken at the start, checked after it has expired in test 1b (at the end), so the
    // wait for its expiry overlaps the other tests.
    let early;
    let earlyToken;

    before(async () => {
      early = await newUser('early');
      earlyToken = await accessToken(early);
    });

    after(closeSockets);

    socketTest('1a. refused handshakes: "No token provided", "Invalid token"', async () => {
      assert.equal(await refusal(transport, undefined), 'No token provided', 'no auth object');
      assert.equal(await refusal(transport, {}), 'No token provided', 'auth without token');
      assert.equal(await refusal(transport, { token: '' }), 'No token provided', 'empty token');
      assert.equal(await refusal(transport, { token: 'not-a-jwt' }), 'Invalid token', 'garbage token');
      const [header, payload] = earlyToken.split('.');
      const forged = `${header}.${payload}.${randomKey(32)}`;
      assert.equal(await refusal(transport, { token: forged }), 'Invalid token', 'forged signature');
      // The real token is accepted (so the refusals above are about the tokens).
      await connect(transport, earlyToken, 'early');
    });

    socketTest('2. two users exchange a message: ack, messageSent, receivedMessage, messageDelivered, messageRead', async (t) => {
      const [alice, bob] = await Promise.all([newUser('alice'), newUser('bob')]);
      const chatId = await createChat(alice, bob);
      const [a, b] = await Promise.all([connectUser(transport, alice), connectUser(transport, bob)]);
      const payload = messagePayload(chatId, alice, bob);
      let sent; // the ack's data
      let received; // bob's receivedMessage: {payload, args}

      await t.test('sendMessage is acknowledged; messageSent to the sender, receivedMessage to the receiver', async () => {
        const before = Date.now();
        sent = okData(await ack(a.socket, 'sendMessage', payload), 'sendMessage');
        assertUuid(sent.messageId, 'ack messageId');
        assert.equal(sent.tempMessageId, payload.tempMessageId, 'ack tempMessageId');
        assert.equal(sent.chatId, chatId, 'ack chatId');
        assert.equal(sent.sequenceNumber, 1, 'ack sequenceNumber of the first message');
        assert.equal(sent.duplicate, false, 'ack duplicate');
        const createdAt = assertTime(sent.createdAt, 'ack createdAt');
        assert.ok(createdAt >= before - 2000 && createdAt <= Date.now() + 2000, `createdAt ${sent.createdAt} is not now`);

        const { payload: ms } = await a.inbox.next('messageSent', { where: (p) => p?.messageId === sent.messageId });
        assert.deepEqual(ms, sent, 'messageSent carries what the ack carried');

        received = await b.inbox.next('receivedMessage', { where: (p) => p?.id === sent.messageId });
        const m = received.payload;
        assert.equal(m.chatId, chatId);
        assert.equal(m.sender, alice.id);
        assert.equal(m.receiver, bob.id);
        for (const field of ['cipher', 'iv', 'signature', 'senderPublicIdKey', 'senderPublicSigningKey', 'receiverPublicIdKey']) {
          assertB64url(m[field], `receivedMessage.${field}`);
          assert.equal(m[field], payload[field], `receivedMessage.${field}`);
        }
        assert.equal(m.sequenceNumber, 1);
        assert.equal(m.deliveryStatus, 'sent');
        assert.equal(m.tempMessageId, payload.tempMessageId);
        assert.equal(assertTime(m.clientTimestamp, 'clientTimestamp'), Date.parse(payload.clientTimestamp));
        assert.equal(assertTime(m.createdAt, 'receivedMessage.createdAt'), createdAt);
        assert.equal(typeof received.args[1], 'function', 'receivedMessage must ask for an acknowledgement');

        // The same tempMessageId again: the first message, nothing new stored.
        const again = okData(await ack(a.socket, 'sendMessage', payload), 'sendMessage repeated');
        assert.equal(again.duplicate, true, 'a repeated send is a duplicate');
        assert.equal(again.messageId, sent.messageId);
        assert.equal(again.sequenceNumber, 1);
      });

      /** Bob acknowledges `rec` with `args`; alice must get messageDelivered for `message`. */
      async function expectDelivered(rec, message, args) {
        assert.ok(rec, 'no receivedMessage to acknowledge');
        const acked = Date.now();
        rec.args[1](...args);
        let delivered;
        try {
          delivered = await a.inbox.next('messageDelivered', { where: (p) => p?.messageId === message.messageId });
        } catch (err) {
          // Say whether the ack was recorded at all, to tell a missing emit from a lost ack.
          const list = await api('GET', `/messages/${chatId}?limit=50`, { token: await accessToken(alice) });
          const stored = list.body?.data?.find?.((x) => x.id === message.messageId);
          throw new Error(
            `no messageDelivered for message ${message.sequenceNumber}, although GET /messages/${chatId} ` +
              `shows it with deliveryStatus ${show(stored?.deliveryStatus)}, deliveredAt ${show(stored?.deliveredAt)}. ` +
              err.message,
            { cause: err },
          );
        }
        const d = delivered.payload;
        assert.deepEqual(Object.keys(d).sort(), ['chatId', 'deliveredAt', 'messageId', 'sequenceNumber'], `messageDelivered: ${show(d)}`);
        assert.equal(d.chatId, chatId);
        assert.equal(d.sequenceNumber, message.sequenceNumber);
        const at = assertTime(d.deliveredAt, 'deliveredAt');
        assert.ok(at >= acked - 2000 && at <= Date.now() + 2000, `deliveredAt ${d.deliveredAt} is not now`);
      }

      await t.test("the receiver's ack of receivedMessage (with a value) gives the sender messageDelivered", async () => {
        await expectDelivered(received, sent, [{ ok: true }]);
      });

      let sent2;
      await t.test("the receiver's ack of receivedMessage (with no arguments) gives the sender messageDelivered", async () => {
        const payload2 = messagePayload(chatId, alice, bob);
        sent2 = okData(await ack(a.socket, 'sendMessage', payload2), 'second sendMessage');
        assert.equal(sent2.sequenceNumber, 2, 'sequence numbers count up without gaps');
        const received2 = await b.inbox.next('receivedMessage', { where: (p) => p?.id === sent2.messageId });
        await expectDelivered(received2, sent2, []);
      });

      await t.test('markMessageAsRead gives messageRead to the sender and the reader', async () => {
        const upTo = sent2?.sequenceNumber ?? sent?.sequenceNumber;
        assert.ok(upTo, 'no message to read');
        const before = Date.now();
        const data = okData(await ack(b.socket, 'markMessageAsRead', { chatId, upToSequence: upTo }), 'markMessageAsRead');
        assert.equal(data.chatId, chatId, 'markMessageAsRead ack chatId');
        assert.equal(data.upToSequence, upTo, 'markMessageAsRead ack upToSequence');
        // Wait for both at once, so a failure says which of them got nothing.
        const who = [['sender alice', a.inbox], ['reader bob', b.inbox]];
        const results = await Promise.allSettled(
          who.map(([name, inbox]) => inbox.next('messageRead', { where: (p) => p?.chatId === chatId, what: `to the ${name}` })),
        );
        const missing = results.filter((r) => r.status === 'rejected').map((r) => r.reason.message);
        assert.deepEqual(missing, [], 'messageRead must reach the sender and the reader');
        for (const [i, [name]] of who.entries()) {
          const r = results[i].value.payload;
          assert.equal(r.upToSequence, upTo, `messageRead.upToSequence (${name})`);
          assert.equal(r.reader, bob.id, `messageRead.reader (${name})`);
          const at = assertTime(r.readAt, 'readAt');
          assert.ok(at >= before - 2000 && at <= Date.now() + 2000, `readAt ${r.readAt} is not now`);
        }
      });

      await t.test('the sending socket itself gets no receivedMessage copy', () => {
        // Everything for alice's socket went out in order; the copy would have come before.
        assert.deepEqual(a.inbox.all('receivedMessage').map((e) => show(e.args)), []);
        assert.deepEqual(b.inbox.all('messageSent').map((e) => show(e.args)), [], 'the receiver gets no messageSent');
      });
    });

    socketTest('3. typing: userTyping true, then false by itself after the typing timeout', async () => {
      const [alice, bob] = await Promise.all([newUser('alice'), newUser('bob')]);
      const chatId = await createChat(alice, bob);
      const [a, b] = await Promise.all([connectUser(transport, alice), connectUser(transport, bob)]);
      const fromAlice = (typing) => (p) => p?.chatId === chatId && p?.userId === alice.id && p?.isTyping === typing;

      const started = Date.now();
      okData(await ack(a.socket, 'typing', { chatId, isTyping: true }), 'typing true');
      await b.inbox.next('userTyping', { where: fromAlice(true), what: 'isTyping true' });
      const { at } = await b.inbox.next('userTyping', {
        where: fromAlice(false),
        timeoutMs: TYPING_TIMEOUT_MS + 3000,
        what: 'isTyping false after the typing timeout',
      });
      const elapsed = at - started;
      assert.ok(
        elapsed >= TYPING_TIMEOUT_MS - 300,
        `the typing indicator stopped after ${elapsed} ms, before the typing timeout of ${TYPING_TIMEOUT_MS} ms ` +
          '(set JIBBER_TEST_TYPING_TIMEOUT_MS to the server\'s JIBBER_TYPING_TIMEOUT)',
      );

      // An explicit stop is passed on at once.
      okData(await ack(a.socket, 'typing', { chatId, isTyping: true }), 'typing true again');
      await b.inbox.next('userTyping', { where: fromAlice(true), what: 'isTyping true again' });
      const stopped = Date.now();
      okData(await ack(a.socket, 'typing', { chatId, isTyping: false }), 'typing false');
      const stop = await b.inbox.next('userTyping', { where: fromAlice(false), what: 'explicit isTyping false' });
      assert.ok(stop.at - stopped < Math.max(1000, TYPING_TIMEOUT_MS - 500), 'the explicit stop came late');
      assert.deepEqual(a.inbox.all('userTyping').map((e) => show(e.args)), [], 'the typist gets no userTyping');
    });

    socketTest('4. presence goes to chat peers only: onlineUsers, userOnline, userAway, userBack, userOffline', async () => {
      const [alice, bob, carol] = await Promise.all([newUser('alice'), newUser('bob'), newUser('carol')]);
      await createChat(alice, bob); // carol shares no chat with either
      const wire = new Tripwire();
      const aboutCarol = (p) => p?.userId === carol.id;

      // Carol is online first and must hear nothing about alice and bob.
      const c = await connectUser(transport, carol);
      for (const ev of [...PRESENCE_EVENTS, 'userTyping']) wire.watch(c.socket, 'carol', ev);
      const { payload: carolOnline } = await c.inbox.next('onlineUsers');
      assert.deepEqual(carolOnline, { userIds: [] }, "carol's onlineUsers");

      const a = await connectUser(transport, alice);
      for (const ev of PRESENCE_EVENTS) wire.watch(a.socket, 'alice', ev, aboutCarol);
      const { payload: aliceOnline } = await a.inbox.next('onlineUsers');
      assert.deepEqual(aliceOnline, { userIds: [] }, "alice's onlineUsers (bob is offline)");

      const b = await connectUser(transport, bob);
      for (const ev of PRESENCE_EVENTS) wire.watch(b.socket, 'bob', ev, aboutCarol);
      const { payload: bobOnline } = await wire.race(b.inbox.next('onlineUsers'));
      assert.deepEqual(bobOnline, { userIds: [alice.id] }, "bob's onlineUsers (alice is online, carol is no peer)");

      const { payload: on } = await wire.race(a.inbox.next('userOnline', { where: (p) => p?.userId === bob.id }));
      assert.deepEqual(on, { userId: bob.id }, 'userOnline');

      okData(await ack(b.socket, 'userAway'), 'userAway');
      const { payload: away } = await wire.race(a.inbox.next('userAway', { where: (p) => p?.userId === bob.id }));
      assert.deepEqual(away, { userId: bob.id }, 'userAway');
      okData(await ack(b.socket, 'userBack'), 'userBack');
      const { payload: back } = await wire.race(a.inbox.next('userBack', { where: (p) => p?.userId === bob.id }));
      assert.deepEqual(back, { userId: bob.id }, 'userBack');

      const leaving = Date.now();
      b.socket.disconnect();
      const { payload: off, at } = await wire.race(a.inbox.next('userOffline', { where: (p) => p?.userId === bob.id }));
      assert.deepEqual(Object.keys(off).sort(), ['lastSeen', 'userId'], `userOffline fields: ${show(off)}`);
      const lastSeen = assertTime(off.lastSeen, 'userOffline.lastSeen');
      assert.ok(
        lastSeen >= leaving - 1000 && lastSeen <= at + 1000,
        `lastSeen ${off.lastSeen} is not the time bob left (${new Date(leaving).toISOString()})`,
      );

      // Alice heard everything about bob; carol, on the same server, heard nothing.
      wire.check();
      assert.deepEqual(
        c.inbox.entries.filter((e) => e.event !== 'onlineUsers').map((e) => `${e.event} ${show(e.args)}`),
        [],
        'carol received events about users she shares no chat with',
      );
    });

    socketTest('5. in-band token refresh keeps a socket past its token expiry; without it: sessionExpired', async () => {
      const [user, stranger] = await Promise.all([newUser('dana'), newUser('stranger')]);
      const token = await accessToken(user);
      const ttl = shortTtl(token);
      const { exp } = claims(token);
      // Two devices of the same user on the same token: one refreshes, one does not.
      const [keeper, loser] = await Promise.all([
        connect(transport, token, 'refreshing socket'),
        connect(transport, token, 'non-refreshing socket'),
      ]);
      const wire = new Tripwire();
      wire.watch(keeper.socket, 'the refreshing socket', 'sessionExpired');
      wire.watch(keeper.socket, 'the refreshing socket', 'disconnect');

      // Bad tokens are refused and change nothing.
      refused(await ack(keeper.socket, 'refreshToken', { token: 'not-a-jwt' }), 'INVALID_TOKEN', 'refreshToken', 'refreshToken with garbage');
      refused(
        await ack(keeper.socket, 'refreshToken', { token: await accessToken(stranger) }),
        'INVALID_TOKEN',
        'refreshToken',
        "refreshToken with another user's token",
      );

      // Shortly before the old token expires, present a fresh one.
      await delay(exp * 1000 - 800 - Date.now());
      const fresh = await rotateTokens(user);
      const newExp = claims(fresh).exp;
      assert.ok(newExp > exp, `the new token (exp ${newExp}) must outlive the old one (exp ${exp})`);
      const data = okData(await wire.race(ack(keeper.socket, 'refreshToken', { token: fresh })), 'refreshToken');
      assert.equal(data.expiresAt, newExp, 'refreshToken ack expiresAt is the new token\'s exp');

      // The other device did not refresh: it is told and disconnected at the old expiry.
      const { payload: notice, at } = await wire.race(
        loser.inbox.next('sessionExpired', { timeoutMs: exp * 1000 + 1000 + EVENT_TIMEOUT_MS - Date.now() }),
      );
      assert.equal(typeof notice?.reason, 'string', `sessionExpired {reason}: ${show(notice)}`);
      assert.ok(at >= exp * 1000 - 1000, `sessionExpired came ${exp * 1000 - at} ms before the token expired`);
      const { payload: reason } = await wire.race(loser.inbox.next('disconnect'));
      assert.equal(reason, 'io server disconnect');
      assert.equal(loser.socket.connected, false);

      // Past the old expiry (a whole second after exp, whatever the server's timer phase), the
      // refreshed socket still works.
      await delay((exp + 1) * 1000 + 200 - Date.now());
      const beat = okData(await wire.race(ack(keeper.socket, 'heartbeat', { timestamp: Date.now() })), 'heartbeat after the old expiry');
      const serverTime = assertTime(beat.serverTime, 'heartbeat serverTime');
      assert.ok(serverTime >= (exp + 1) * 1000, `heartbeat answered at ${beat.serverTime}, not after the old expiry`);
      assert.equal(keeper.socket.connected, true, 'the refreshed socket is still connected');
      wire.check();

      // The refreshed authorisation ends as well, at the new token's expiry.
      wire.disarm();
      const late = await keeper.inbox.next('sessionExpired', {
        timeoutMs: newExp * 1000 + 1000 + EVENT_TIMEOUT_MS - Date.now(),
        what: `at the new expiry (TTL ${ttl} s)`,
      });
      assert.ok(late.at >= newExp * 1000 - 1000, 'the refreshed socket expired before its new token did');
      const { payload: lateReason } = await keeper.inbox.next('disconnect');
      assert.equal(lateReason, 'io server disconnect');
    });

    socketTest('6. bad payloads: VALIDATION_FAILED / PAYLOAD_TOO_LARGE, an error event, and no disconnect', async () => {
      const [alice, bob] = await Promise.all([newUser('alice'), newUser('bob')]);
      const chatId = await createChat(alice, bob);
      const a = await connectUser(transport, alice);
      const wire = new Tripwire();
      wire.watch(a.socket, 'alice', 'disconnect');
      const good = () => messagePayload(chatId, alice, bob);
      const { chatId: _c, ...noChat } = good();
      const { cipher: _x, ...noCipher } = good();

      const cases = [
        ['cipher is a number', 'sendMessage', [{ ...good(), cipher: 123 }], 'VALIDATION_FAILED'],
        ['only chatId', 'sendMessage', [{ chatId }], 'VALIDATION_FAILED'],
        ['no cipher', 'sendMessage', [noCipher], 'VALIDATION_FAILED'],
        ['no chatId', 'sendMessage', [noChat], 'VALIDATION_FAILED'],
        ['no payload at all', 'sendMessage', [], 'VALIDATION_FAILED'],
        ['a string payload', 'sendMessage', ['hello'], 'VALIDATION_FAILED'],
        ['empty cipher', 'sendMessage', [{ ...good(), cipher: '' }], 'VALIDATION_FAILED'],
        ['padded base64 cipher', 'sendMessage', [{ ...good(), cipher: 'QUJD==' }], 'VALIDATION_FAILED'],
        ['standard base64 cipher', 'sendMessage', [{ ...good(), cipher: 'ab+/cd' }], 'VALIDATION_FAILED'],
        ['clientTimestamp not RFC 3339', 'sendMessage', [{ ...good(), clientTimestamp: 'yesterday' }], 'VALIDATION_FAILED'],
        ['receiver not a UUID', 'sendMessage', [{ ...good(), receiver: 'bob' }], 'VALIDATION_FAILED'],
        [`cipher of ${MAX_MESSAGE_BYTES + 1} bytes`, 'sendMessage', [{ ...good(), cipher: randomKey(MAX_MESSAGE_BYTES + 1) }], 'PAYLOAD_TOO_LARGE'],
        ['typing with a bad chatId', 'typing', [{ chatId: 'nope', isTyping: true }], 'VALIDATION_FAILED'],
        ['markMessageAsRead with both forms', 'markMessageAsRead', [{ chatId, upToSequence: 1, messageId: randomUUID() }], 'VALIDATION_FAILED'],
      ];
      for (const [what, event, args, code] of cases) {
        const error = refused(await wire.race(ack(a.socket, event, ...args)), code, event, what);
        const { payload: pushed } = await wire.race(
          a.inbox.next('error', { where: (p) => p?.code === code && p?.event === event, what }),
        );
        assert.deepEqual(pushed, error, `${what}: the error event carries the ack's error`);
        assert.equal(a.socket.connected, true, `${what}: the socket must stay connected`);
      }

      // The socket still works: a valid message goes through.
      const sent = okData(await wire.race(ack(a.socket, 'sendMessage', good())), 'a valid sendMessage after the bad ones');
      assert.equal(sent.sequenceNumber, 1, 'none of the refused sends stored anything');
      wire.check();
    });

    socketTest('7. rate limit: RATE_LIMITED with retryAfterMs, the socket stays usable; ping gives pong', async () => {
      const user = await newUser('erin');
      const a = await connectUser(transport, user);
      const wire = new Tripwire();
      wire.watch(a.socket, 'erin', 'disconnect');

      const burst = EVENTS_PER_SECOND * 2;
      const n = EVENTS_PER_SECOND * 3 + 10;
      const answers = await wire.race(
        Promise.all(Array.from({ length: n }, (_, i) => ack(a.socket, 'heartbeat', { timestamp: Date.now(), i }))),
      );
      const accepted = answers.filter((x) => x?.ok === true);
      const limited = answers.filter((x) => x?.ok !== true);
      assert.ok(
        limited.length > 0,
        `${n} heartbeats at once were all accepted; the server must allow at most ${burst} in a burst ` +
          '(set JIBBER_TEST_SOCKET_EVENTS_PER_SECOND to the server\'s JIBBER_SOCKET_EVENTS_PER_SECOND)',
      );
      assert.ok(accepted.length >= EVENTS_PER_SECOND, `only ${accepted.length} of ${n} heartbeats were accepted`);
      for (const x of accepted) assertTime(x.data?.serverTime, 'heartbeat serverTime');
      let wait = 0;
      for (const x of limited) {
        const e = refused(x, 'RATE_LIMITED', 'heartbeat', 'a heartbeat over the limit');
        assert.ok(Number.isInteger(e.retryAfterMs) && e.retryAfterMs >= 0, `retryAfterMs: ${show(e)}`);
        assert.ok(e.retryAfterMs <= 2000, `retryAfterMs ${e.retryAfterMs} is longer than the limit's period`);
        wait = Math.max(wait, e.retryAfterMs);
      }
      const { payload: pushed } = await wire.race(a.inbox.next('error', { where: (p) => p?.code === 'RATE_LIMITED' }));
      assert.equal(pushed.event, 'heartbeat');
      assert.equal(a.socket.connected, true, 'a rate-limited socket stays connected');

      // Limits are per event: ping is answered (with a pong) while heartbeat is limited.
      okData(await wire.race(ack(a.socket, 'ping')), 'ping');
      await wire.race(a.inbox.next('pong'));

      // After the advertised wait, heartbeat is accepted again.
      await delay(wait + 50);
      const beat = okData(await wire.race(ack(a.socket, 'heartbeat', { timestamp: Date.now() })), 'heartbeat after retryAfterMs');
      assertTime(beat.serverTime, 'heartbeat serverTime');
      wire.check();
    });

    socketTest('1b. refused handshake: "Token expired"', async () => {
      const { exp } = claims(earlyToken);
      shortTtl(earlyToken);
      // The server allows TOKEN_LEEWAY_MS of clock skew; wait (if the tests above did not take
      // long enough) until the token is past it, then connect.
      const wait = (exp + 1) * 1000 + TOKEN_LEEWAY_MS + 250 - Date.now();
      await delay(wait);
      assert.equal(await refusal(transport, { token: earlyToken }), 'Token expired');
    });
  });
}
