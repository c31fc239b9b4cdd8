// The official socket.io-client through the polling→WebSocket upgrade while a fault-injecting
// proxy cuts the upgrade connection (before or after the probe). Run by the Rust test
// crates/jibber-client/tests/faults.rs, which starts the server and the proxy, arms the fault and
// points JIBBER_URL at the proxy; not a `node --test` file.
//
// Each round connects bob then alice with the default transports (polling, then the upgrade),
// and both send messages at once, so sends are in flight while the upgrade is tried and cut. A
// send whose acknowledgement does not come is sent again with the same tempMessageId. At the end
// the script checks through REST that every message is stored once with gapless sequence
// numbers, that each receiver got every message of the other once, in order, and that no session
// dropped (a failed upgrade leaves the session on polling); it prints one JSON line of what it
// counted (`RESULT {...}`) for the Rust side.
//
// Env: JIBBER_URL (the proxy), JIBBER_FAULT_ROUNDS (3), JIBBER_FAULT_MESSAGES (per sender and
// round, 8).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { io } from 'socket.io-client';
import {
  api,
  baseUrl,
  expectOk,
  freshPassword,
  freshUsername,
  login,
  messagePayload,
  register,
} from './helpers.mjs';

const ROUNDS = Number(process.env.JIBBER_FAULT_ROUNDS ?? 3);
const PER_ROUND = Number(process.env.JIBBER_FAULT_MESSAGES ?? 8);
const ACK_TIMEOUT_MS = 5_000;
const DEADLINE_MS = 30_000;

async function newUser(label) {
  const username = freshUsername();
  const password = freshPassword();
  const reg = await register(username, password);
  const { data } = await login(username, password);
  return {
    label,
    id: reg.user.id,
    publicIdKey: reg.publicIdKey,
    publicSigningKey: reg.publicSigningKey,
    token: data.accessToken,
    received: [], // receivedMessage events, in arrival order
    changed: () => {}, // called at each receivedMessage
  };
}

/** Connects with the default transports; resolves once connected, with the upgrade outcome. */
function connect(user, counts) {
  const socket = io(baseUrl(), { auth: { token: user.token }, forceNew: true, reconnection: true });
  socket.on('receivedMessage', (message, ack) => {
    user.received.push(message);
    if (typeof ack === 'function') ack({ ok: true });
    user.changed();
  });
  const upgraded = new Promise((resolve) => {
    socket.io.on('open', () => {
      const engine = socket.io.engine;
      engine.once('upgrade', () => {
        counts.upgraded += 1;
        resolve('upgraded');
      });
      engine.once('upgradeError', () => {
        counts.upgradeErrors += 1;
        resolve('upgradeError');
      });
    });
  });
  socket.on('disconnect', (reason, details) => {
    // Our own disconnect at the end of a round is not a drop.
    if (reason === 'io client disconnect') return;
    counts.drops.push(`${user.label}: ${reason} (${details?.description?.message ?? details?.message ?? ''})`);
  });
  const connected = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${user.label}: no connect`)), DEADLINE_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return { socket, connected, upgraded };
}

/** Sends until acknowledged, with the same tempMessageId each time. */
async function sendOnce(socket, message, counts) {
  const deadline = Date.now() + DEADLINE_MS;
  for (let attempt = 0; ; attempt += 1) {
    if (attempt > 0) counts.retried += 1;
    try {
      const answer = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck('sendMessage', message);
      assert.equal(answer?.ok, true, `sendMessage refused: ${JSON.stringify(answer)}`);
      return answer.data;
    } catch (err) {
      if (err instanceof assert.AssertionError || Date.now() > deadline) throw err;
    }
  }
}

async function main() {
  const alice = await newUser('alice');
  const bob = await newUser('bob');
  const chat = expectOk(await api('POST', '/chats', { json: { userId: bob.id }, token: alice.token }), 201, 'chat');
  const counts = { upgraded: 0, upgradeErrors: 0, retried: 0, drops: [] };
  const sent = { alice: [], bob: [] };

  for (let round = 0; round < ROUNDS; round += 1) {
    const b = connect(bob, counts);
    await b.connected;
    const a = connect(alice, counts);
    await a.connected;
    // Both write at once while their upgrades are tried (and cut); each in order.
    const write = async (socket, from, to, list) => {
      for (let i = 0; i < PER_ROUND; i += 1) {
        const m = messagePayload(chat.id, from, to, { tempMessageId: `${from.label}-${round}.${i}-${randomUUID()}` });
        const stored = await sendOnce(socket, m, counts);
        assert.equal(stored.tempMessageId, m.tempMessageId);
        list.push(stored);
      }
    };
    await Promise.all([write(a.socket, alice, bob, sent.alice), write(b.socket, bob, alice, sent.bob)]);
    await Promise.all([a.upgraded, b.upgraded]);
    // Every message of this round reached the other side before the sockets close.
    const arrived = () => alice.received.length >= sent.bob.length && bob.received.length >= sent.alice.length;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(
            `round ${round}: not every message arrived live: alice got ${alice.received.length} of ` +
              `${sent.bob.length}, bob got ${bob.received.length} of ${sent.alice.length} ${JSON.stringify(counts)}`,
          ),
        );
      }, DEADLINE_MS);
      const check = () => {
        if (arrived()) {
          clearTimeout(timer);
          resolve();
        }
      };
      alice.changed = check;
      bob.changed = check;
      check();
    });
    a.socket.disconnect();
    b.socket.disconnect();
  }

  // The server stored each message once, gapless; each receiver saw the other's, once, in order.
  const stored = expectOk(await api('GET', `/messages/${chat.id}/sync?since=0`, { token: alice.token }), 200, 'history');
  const total = sent.alice.length + sent.bob.length;
  assert.deepEqual(
    stored.map((m) => m.sequenceNumber),
    Array.from({ length: total }, (_, i) => i + 1),
    'gapless sequence numbers',
  );
  assert.equal(new Set(stored.map((m) => m.tempMessageId)).size, total, 'each tempMessageId once');
  for (const [receiver, list] of [
    [bob, sent.alice],
    [alice, sent.bob],
  ]) {
    assert.deepEqual(
      receiver.received.map((m) => m.tempMessageId),
      list.map((m) => m.tempMessageId),
      `${receiver.label} received each message once, in order`,
    );
  }
  for (const m of [...sent.alice, ...sent.bob]) {
    const s = stored.find((x) => x.id === m.messageId);
    assert.ok(s && s.sequenceNumber === m.sequenceNumber, `acknowledged ${m.messageId} is stored as acknowledged`);
  }
  // A failed upgrade is the upgrade's failure only: the session goes on over polling.
  assert.deepEqual(counts.drops, [], 'no session dropped');
  console.log(`RESULT ${JSON.stringify({ ...counts, messages: total })}`);
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
