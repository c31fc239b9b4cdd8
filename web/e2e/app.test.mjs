// The web client end to end: two browsers (Chromium contexts) against the real server, plus a
// Node client for what the UI cannot do (a forged message, a key rotation) and the Rust CLI.
// Run by crates/jibber-cli/tests/web.rs (JIBBER_BIN = the built binary), or:
//   JIBBER_BIN=../target/debug/jibber npm run e2e
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomUUID, webcrypto } from 'node:crypto';
import { after, afterEach, before, test } from 'node:test';
import { promisify } from 'node:util';
import {
  Server,
  TIMEOUT,
  api,
  b64,
  bubble,
  launch,
  logIn,
  newDevice,
  openChatWith,
  opaqueLogin,
  screenshot,
  send,
  signUp,
  startChat,
  waitStatus,
  withTimeout,
} from './harness.mjs';

const suffix = randomUUID().slice(0, 6);
const alice = { username: `alice_${suffix}`, password: 'correct horse battery' };
const bob = { username: `bob_${suffix}`, password: 'staple horse battery' };
const carol = { username: `carol_${suffix}`, password: 'rust sdk horse battery' };
const carl = { username: `carl_${suffix}`, password: 'another horse battery' };

// Short access tokens: the clients refresh (REST and in band on the socket) many times per run.
const server = new Server({ JIBBER_ACCESS_TOKEN_TTL: '20s', JIBBER_AUTH_RATE_PER_IP: '1000' });
let browser;
let A; // alice's device
let B; // bob's device

before(async () => {
  await server.start();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server.dispose();
});

// What each browser showed at the end of every test (named after the test), for failures.
afterEach(async (t) => {
  const name = t.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 40);
  for (const [who, d] of [['A', A], ['B', B]]) {
    if (d && !d.page.isClosed()) await screenshot(d.page, `last/${name}-${who}`).catch(() => undefined);
  }
});

const count = (locator) => locator.count();

test('sign up: the auth screen, then "no other users yet"', async () => {
  A = await newDevice(browser, server);
  await A.page.getByTestId('auth-form').waitFor();
  await screenshot(A.page, '01-auth', 'auth');
  await signUp(A.page, alice.username, alice.password);
  await A.page.getByTestId('no-chats').waitFor();
  await A.page.getByTestId('new-chat').click();
  await A.page.getByTestId('no-users').waitFor();
  await screenshot(A.page, '02-no-users-yet');
  await A.page.getByTestId('contacts').getByText('Cancel').click();
});

test("the CSP allows the OPAQUE WebAssembly and nothing more: without 'wasm-unsafe-eval' it cannot load", async () => {
  const res = await fetch(server.url);
  const csp = res.headers.get('content-security-policy');
  assert.match(csp, /script-src 'self' 'wasm-unsafe-eval';/);
  assert.doesNotMatch(csp, /unsafe-inline|'unsafe-eval'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
  // The same app with 'wasm-unsafe-eval' taken out of its CSP: sign-up fails on WebAssembly.
  const X = await newDevice(browser, server);
  await X.context.route('**/*', async (route) => {
    const response = await route.fetch();
    const headers = response.headers();
    if (headers['content-security-policy']) {
      headers['content-security-policy'] = headers['content-security-policy'].replace(" 'wasm-unsafe-eval'", '');
    }
    await route.fulfill({ response, headers });
  });
  await X.page.reload();
  await X.page.getByTestId('tab-signup').click();
  await X.page.locator('input[name=username]').fill(`csp_${suffix}`);
  await X.page.locator('input[name=password]').fill('password123');
  await X.page.getByTestId('auth-submit').click();
  await X.page.getByTestId('auth-error').getByText(/WebAssembly/).waitFor();
  await X.context.close();
});

test('the manifest is served as one, names the app, and every icon it lists exists', async () => {
  const html = await (await fetch(server.url)).text();
  const href = html.match(/<link rel="manifest" href="([^"]+)"/)?.[1];
  assert.ok(href, 'index.html links the manifest');
  const url = new URL(href, server.url);
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^application\/manifest\+json/);
  const manifest = await res.json();
  assert.equal(manifest.name, 'Jibber');
  assert.ok(manifest.short_name);
  assert.ok(['standalone', 'fullscreen', 'minimal-ui'].includes(manifest.display), manifest.display);
  // start_url opens the app.
  const start = await fetch(new URL(manifest.start_url, url));
  assert.equal(start.status, 200);
  assert.match(await start.text(), /<div id="root">/);
  // Installable: PNG icons of 192 and 512 pixels at least, each of the size it claims.
  const sizes = [];
  for (const icon of manifest.icons) {
    const got = await fetch(new URL(icon.src, url));
    assert.equal(got.status, 200, icon.src);
    assert.equal(got.headers.get('content-type').split(';')[0], icon.type, icon.src);
    const body = Buffer.from(await got.arrayBuffer());
    if (icon.type === 'image/png') {
      assert.equal(body.subarray(1, 4).toString(), 'PNG', icon.src);
      // The IHDR chunk: width and height, big-endian, at bytes 16 and 20.
      const size = `${body.readUInt32BE(16)}x${body.readUInt32BE(20)}`;
      assert.equal(size, icon.sizes, icon.src);
      sizes.push(size);
    } else {
      assert.match(body.toString(), /<svg[\s>]/, icon.src);
    }
  }
  assert.ok(sizes.includes('192x192') && sizes.includes('512x512'), `PNG icons: ${sizes}`);
});

test('over plain HTTP on a non-local name the app says it needs HTTPS (no WebCrypto there)', async () => {
  const insecure = await launch(['--host-resolver-rules=MAP insecure.test 127.0.0.1']);
  try {
    const page = await insecure.newPage();
    await page.goto(`http://insecure.test:${server.port}/`);
    await page.getByTestId('insecure').getByText('Jibber needs HTTPS').waitFor({ timeout: TIMEOUT });
    await screenshot(page, '00-needs-https');
  } finally {
    await insecure.close();
  }
});

test('a wrong password is refused with a clear message', async () => {
  const X = await newDevice(browser, server);
  await X.page.locator('input[name=username]').fill(alice.username);
  await X.page.locator('input[name=password]').fill('not the password');
  await X.page.getByTestId('auth-submit').click();
  await X.page.getByTestId('auth-error').getByText('Wrong username or password.').waitFor();
  await X.context.close();
});

test('two users start a chat and exchange messages with typing, delivered and read marks', async () => {
  B = await newDevice(browser, server);
  await signUp(B.page, bob.username, bob.password);
  await startChat(A.page, bob.username);
  assert.ok(
    await A.page.evaluate(() => document.querySelector('[data-testid=chat-item].active') !== null),
    'the new chat is the active one in the list',
  );

  // Both are online, and each sees the other so as soon as they share the chat.
  await A.page.getByTestId('peer-status').getByText('online', { exact: true }).waitFor();
  await A.page.locator(`[data-testid=chat-item][data-username="${bob.username}"]`).getByTestId('presence-online').waitFor();

  // Bob gets the chat (newConversation) and opens it.
  await openChatWith(B.page, alice.username);
  await B.page.locator(`[data-testid=chat-item][data-username="${alice.username}"]`).getByTestId('presence-online').waitFor();
  await B.page.getByTestId('peer-status').getByText('online', { exact: true }).waitFor();

  // Typing shows on the other side, and goes away.
  await A.page.getByTestId('composer').pressSequentially('Hel', { delay: 30 });
  await B.page.getByTestId('typing').waitFor();
  await B.page.getByTestId('peer-status').getByText('typing…').waitFor();
  await screenshot(B.page, '03-typing');

  await A.page.getByTestId('composer').fill('Hello Bob! 👋');
  await A.page.getByTestId('send').click();
  await bubble(B.page, 'Hello Bob! 👋').waitFor();
  await B.page.getByTestId('typing').waitFor({ state: 'detached' });
  // Bob has the chat open and visible: Alice sees it delivered, then read.
  await waitStatus(A.page, 'Hello Bob! 👋', 'read');

  await send(B.page, 'Hi Alice, all good here.');
  await bubble(A.page, 'Hi Alice, all good here.').waitFor();
  await waitStatus(B.page, 'Hi Alice, all good here.', 'read');
  await send(A.page, 'Great. This is end-to-end encrypted, right?');
  await waitStatus(A.page, 'This is end-to-end encrypted', 'read');
  await screenshot(A.page, '04-conversation', 'conversation');
  await screenshot(B.page, '05-conversation-bob');
});

test('unread badge and decrypted preview in the chat list, cleared on open', async () => {
  await A.page.keyboard.press('Escape');
  await A.page.getByTestId('conversation').waitFor({ state: 'detached' });
  await send(B.page, 'Are you there?');
  await waitStatus(B.page, 'Are you there?', 'delivered');
  const item = A.page.locator(`[data-testid=chat-item][data-username="${bob.username}"]`);
  await item.getByTestId('unread').getByText('1').waitFor();
  await item.getByTestId('preview').getByText('Are you there?').waitFor();
  await screenshot(A.page, '06-chat-list-unread', 'chat-list');
  await item.click();
  await item.getByTestId('unread').waitFor({ state: 'detached' });
  await waitStatus(B.page, 'Are you there?', 'read');
});

// Over the server's default max_message_bytes; accepted after the restart below raises it.
const KEPT_START = 'Kept for later';
const KEPT = `${KEPT_START}${'.'.repeat(70_000)}`;

test('a message the server refuses is marked failed, with Retry and Delete', async () => {
  // Over max_message_bytes (64 KiB): the server answers PAYLOAD_TOO_LARGE, not a network error.
  const huge = `too long ${'x'.repeat(70_000)}`;
  await send(A.page, huge);
  const failed = A.page.locator('[data-testid=message][data-status=failed]');
  await failed.waitFor();
  await failed.getByText(/Not sent: too long to send/).waitFor();
  await screenshot(A.page, '06b-failed', 'message-failed');
  await failed.getByTestId('retry').click();
  await A.page.locator('[data-testid=message][data-status=failed]').waitFor();
  await failed.getByText('Delete').click();
  await failed.waitFor({ state: 'detached' });
  // Another one stays failed: the server down test below restarts the server with a higher limit.
  await send(A.page, KEPT);
  await A.page.locator('[data-testid=message][data-status=failed]').filter({ hasText: KEPT_START }).waitFor();
  assert.equal(await count(B.page.getByTestId('message')), 4);
});

test('server down: the banner, the contacts screen and Retry now; what was sent goes out once', async () => {
  // A second device of Alice's whose timers the test stops: only "Retry now" can reconnect it.
  const D = await newDevice(browser, server, {}, { clock: true });
  await logIn(D.page, alice.username, alice.password);
  await D.page.getByTestId('connection').getByText('Connected').waitFor();

  await server.stop();
  await A.page.getByTestId('unreachable').waitFor();
  await D.page.getByTestId('unreachable').waitFor();
  await D.context.clock.pauseAt((await D.page.evaluate(() => Date.now())) + 3_000);
  await send(A.page, 'Sent while the server was down');
  await waitStatus(A.page, 'Sent while the server was down', 'sending');
  await A.page.keyboard.press('Escape');
  await A.page.getByTestId('conversation').waitFor({ state: 'detached' });
  await screenshot(A.page, '07-server-down', 'server-down');
  // The contacts screen cannot load, and says so with a Retry.
  await A.page.getByTestId('new-chat').click();
  await A.page.getByTestId('contacts-error').getByText('The server cannot be reached.').waitFor();
  await screenshot(A.page, '07b-contacts-unreachable', 'contacts-unreachable');

  // The operator restarts the server with a higher message limit (see the next test).
  server.env.JIBBER_MAX_MESSAGE_BYTES = '131072';
  await server.start();
  await A.page.getByTestId('connection').getByText('Connected').waitFor({ timeout: 30_000 });
  await bubble(B.page, 'Sent while the server was down').waitFor({ timeout: 30_000 });

  // The contacts screen does not retry by itself; its Retry loads the list.
  assert.equal(await count(A.page.getByTestId('contacts-error')), 1);
  assert.equal(await count(A.page.getByTestId('contact')), 0);
  await A.page.getByTestId('contacts-retry').click();
  await A.page.locator(`[data-testid=contact][data-username="${bob.username}"]`).waitFor();
  await A.page.getByTestId('contacts-error').waitFor({ state: 'detached' });
  await A.page.getByTestId('contacts').getByText('Cancel').click();

  await openChatWith(A.page, bob.username);
  await waitStatus(A.page, 'Sent while the server was down', 'read');
  assert.equal(await count(bubble(B.page, 'Sent while the server was down')), 1);
  assert.equal(await count(bubble(A.page, 'Sent while the server was down')), 1);

  // D's timers are stopped, so its automatic reconnection cannot have run: it is still cut off
  // while Alice's other device is back. "Retry now" connects it.
  await D.page.getByTestId('unreachable').waitFor();
  assert.notEqual(await D.page.getByTestId('connection').textContent(), 'Connected');
  await D.page.getByTestId('retry-now').click();
  await D.page.getByTestId('connection').getByText('Connected').waitFor();
  await D.page.getByTestId('unreachable').waitFor({ state: 'detached' });
  await D.context.clock.resume();
  await D.context.close();
});

test('a refused message goes out on Retry once the server accepts it, and only then', async () => {
  // Reconnecting flushed the outbox (the message above went out), but a failed message waits for the user.
  const mine = A.page.locator('[data-testid=message]').filter({ hasText: KEPT_START });
  assert.equal(await mine.getAttribute('data-status'), 'failed');
  assert.equal(await count(B.page.locator('[data-testid=message]').filter({ hasText: KEPT_START })), 0);
  await mine.getByTestId('retry').click();
  await A.page.locator('[data-testid=message][data-status=read]').filter({ hasText: KEPT_START }).waitFor();
  const theirs = B.page.locator('[data-testid=message]').filter({ hasText: KEPT_START });
  await theirs.waitFor();
  assert.equal(await count(theirs), 1);
  assert.equal((await theirs.getByTestId('text').textContent()).length, KEPT.length);
});

test('a reload without network keeps history and the outbox, which goes out once when back', async () => {
  await A.context.setOffline(true);
  await A.page.getByTestId('connection').getByText(/Offline|Connecting/).waitFor();
  await send(A.page, 'Typed offline, then reloaded');
  await waitStatus(A.page, 'Typed offline, then reloaded', 'sending');
  await A.page.reload();
  // The app shell comes from the service worker, history and outbox from IndexedDB, at once.
  await openChatWith(A.page, bob.username);
  await bubble(A.page, 'Hello Bob! 👋').waitFor();
  await waitStatus(A.page, 'Typed offline, then reloaded', 'sending');
  await screenshot(A.page, '08-offline-reload', 'offline-reload');
  await A.context.setOffline(false);
  await bubble(B.page, 'Typed offline, then reloaded').waitFor({ timeout: 30_000 });
  await waitStatus(A.page, 'Typed offline, then reloaded', 'read');
  assert.equal(await count(bubble(B.page, 'Typed offline, then reloaded')), 1);
  // Bob reloads too: his history comes back with every message exactly once.
  await B.page.reload();
  await openChatWith(B.page, alice.username);
  await bubble(B.page, 'Typed offline, then reloaded').waitFor();
  assert.equal(await count(bubble(B.page, 'Sent while the server was down')), 1);
  assert.equal(await count(B.page.getByTestId('message')), 7);
});

test('both sides show the same safety number', async () => {
  const number = async (page) => {
    await page.getByTestId('safety-open').click();
    const el = page.getByTestId('safety-number');
    await el.getByText(/^\d{5}/).waitFor();
    const digits = (await el.textContent()).replace(/\s/g, '');
    return digits;
  };
  const a = await number(A.page);
  await screenshot(A.page, '09-safety-number', 'safety-number');
  const b = await number(B.page);
  assert.match(a, /^\d{60}$/);
  assert.equal(a, b);
  await A.page.getByTestId('safety-close').click();
  await B.page.getByTestId('safety-close').click();
});

test('a receiver cut off from the network catches up on every message once, in order; presence follows', async () => {
  const bobItem = A.page.locator(`[data-testid=chat-item][data-username="${bob.username}"]`);
  const peerStatus = (page, text) => page.getByTestId('peer-status').getByText(text, { exact: true });
  await bobItem.getByTestId('presence-online').waitFor();
  await peerStatus(A.page, 'online').waitFor();
  // Bob's network goes: the server loses his socket, and Alice sees him offline.
  await B.context.setOffline(true);
  await bobItem.getByTestId('presence-online').waitFor({ state: 'detached' });
  await peerStatus(A.page, 'offline').waitFor();
  const burst = ['one', 'two', 'three', 'four', 'five'].map((w) => `Catch-up ${w}`);
  for (const text of burst) await send(A.page, text);
  // Stored, and not delivered: no device of Bob's is connected.
  for (const text of burst) await waitStatus(A.page, text, 'sent');
  await B.context.setOffline(false);
  await bobItem.getByTestId('presence-online').waitFor();
  await peerStatus(A.page, 'online').waitFor();
  // Bob has the chat open: every message reaches him and is read.
  for (const text of burst) await waitStatus(A.page, text, 'read');
  const shown = await B.page.getByTestId('message').evaluateAll((els) =>
    els.map((e) => ({ seq: Number(e.dataset.seq), text: e.querySelector('[data-testid=text]')?.textContent ?? null })),
  );
  assert.deepEqual(shown.slice(-burst.length).map((m) => m.text), burst, 'the burst, in order, last');
  assert.deepEqual(shown.filter((m) => m.text?.startsWith('Catch-up')).map((m) => m.text), burst, 'each once');
  const seqs = shown.map((m) => m.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'in sequence order');
  assert.equal(new Set(seqs).size, seqs.length, 'no sequence number twice');
  // Bob logs out: Alice sees him offline again.
  await B.page.getByTestId('logout').click();
  await B.page.getByTestId('auth-form').waitFor();
  await bobItem.getByTestId('presence-online').waitFor({ state: 'detached' });
  await peerStatus(A.page, 'offline').waitFor();
  await screenshot(A.page, '09b-peer-offline');
});

test('a phone-sized screen shows the list, then the conversation with a back button', async () => {
  const P = await newDevice(browser, server, { viewport: { width: 390, height: 780 }, isMobile: true, hasTouch: true });
  await logIn(P.page, alice.username, alice.password);
  await screenshot(P.page, '10-phone-chat-list', 'phone-chat-list');
  await openChatWith(P.page, bob.username);
  await bubble(P.page, 'Hi Alice, all good here.').waitFor();
  await screenshot(P.page, '11-phone-conversation', 'phone-conversation');
  await P.page.getByTestId('back').click();
  await P.page.getByTestId('chats').waitFor();
  await P.context.close();
});

test('a message that cannot be decrypted is shown as such, not dropped', async () => {
  const { token, user } = await opaqueLogin(server.url, bob.username, bob.password);
  const me = await api(server.url, 'GET', '/users/me', undefined, token);
  const chats = await api(server.url, 'GET', '/chats', undefined, token);
  const chat = chats.find((c) => c.otherUser.username === alice.username);
  const random = (n) => webcrypto.getRandomValues(new Uint8Array(n));
  await api(server.url, 'POST', `/messages/${chat.id}`, {
    receiver: chat.otherUser.id,
    cipher: b64(new Uint8Array([1, ...random(24)])),
    iv: b64(random(12)),
    signature: b64(random(64)),
    senderPublicIdKey: me.publicIdKey,
    senderPublicSigningKey: me.publicSigningKey,
    receiverPublicIdKey: chat.otherUser.publicIdKey,
    clientTimestamp: new Date().toISOString(),
    tempMessageId: randomUUID(),
  }, token);
  assert.equal(user.username, bob.username);
  await A.page.getByTestId('undecryptable').getByText(/BAD_SIGNATURE/).waitFor();
  await screenshot(A.page, '12-undecryptable');
});

test('history loads as you scroll up', async () => {
  const { token } = await opaqueLogin(server.url, bob.username, bob.password);
  const me = await api(server.url, 'GET', '/users/me', undefined, token);
  const chat = (await api(server.url, 'GET', '/chats', undefined, token)).find((c) => c.otherUser.username === alice.username);
  const random = (n) => webcrypto.getRandomValues(new Uint8Array(n));
  // 70 more messages (forged ones are quick to make; they show as "could not be decrypted").
  for (let i = 0; i < 70; i++) {
    await api(server.url, 'POST', `/messages/${chat.id}`, {
      receiver: chat.otherUser.id,
      cipher: b64(new Uint8Array([1, ...random(20)])),
      iv: b64(random(12)),
      signature: b64(random(64)),
      senderPublicIdKey: me.publicIdKey,
      senderPublicSigningKey: me.publicSigningKey,
      receiverPublicIdKey: chat.otherUser.publicIdKey,
      clientTimestamp: new Date().toISOString(),
      tempMessageId: `scroll-${i}-${suffix}`,
    }, token);
  }
  const total = chat.lastSequence + 70;
  // A new device of Alice's: it catches up, then shows the last page and loads older ones on scroll.
  const P = await newDevice(browser, server);
  await logIn(P.page, alice.username, alice.password);
  await openChatWith(P.page, bob.username);
  const messages = P.page.getByTestId('message');
  await P.page.locator(`[data-testid=message][data-seq="${total}"]`).waitFor();
  assert.equal(await messages.count(), 50);
  while ((await messages.count()) < total) {
    const before = await messages.count();
    // Scroll to the top until older messages appear. The app ignores a scroll that comes while
    // a page is still loading (CI once timed out here: the list sat at the top, and a second
    // scroll to 0 is no scroll), so each poll moves the list, as a user's finger would.
    await P.page.waitForFunction(
      (n) => {
        if (document.querySelectorAll('[data-testid=message]').length > n) return true;
        const el = document.querySelector('[data-testid=messages]');
        el.scrollTop = el.scrollTop === 0 ? 1 : 0;
        return false;
      },
      before,
      { polling: 100 },
    );
  }
  await P.page.getByText('This is the start of your chat.').waitFor();
  await bubble(P.page, 'Hello Bob! 👋').waitFor();
  await P.context.close();
});

// ---- the Rust SDK (the `jibber` CLI) and the browser, both ways

const run = promisify(execFile);
const cli = (args, env = {}) =>
  run(process.env.JIBBER_BIN, args, { env: { PATH: process.env.PATH, ...env }, timeout: 60_000 });

test('contact search narrows the list as you type, and says when nobody matches', async () => {
  for (const u of [carol, carl]) {
    await cli(['register', '--server', server.url, '--username', u.username], { JIBBER_PASSWORD: u.password });
  }
  await A.page.keyboard.press('Escape');
  await A.page.getByTestId('conversation').waitFor({ state: 'detached' });
  await A.page.getByTestId('new-chat').click();
  const search = A.page.getByTestId('contact-search');
  const listed = async (expected) => {
    await A.page.waitForFunction(
      (want) =>
        JSON.stringify([...document.querySelectorAll('[data-testid=contact]')].map((e) => e.dataset.username).sort()) ===
        JSON.stringify(want),
      [...expected].sort(),
    );
  };
  // Every other user of this run (never Alice herself), then fewer and fewer.
  await search.fill(suffix);
  await listed([bob.username, carol.username, carl.username]);
  await search.fill('car');
  await listed([carol.username, carl.username]);
  await screenshot(A.page, '13a-contact-search', 'contact-search');
  await search.pressSequentially('o');
  await listed([carol.username]);
  await search.fill(`nobody_${suffix}`);
  await A.page.getByTestId('no-match').getByText(`Nobody called “nobody_${suffix}”.`).waitFor();
  await listed([]);
  await A.page.getByTestId('contacts').getByText('Cancel').click();
});

test('a message from the Rust SDK decrypts in the browser, and the reverse', async () => {
  const env = { JIBBER_PASSWORD: carol.password };
  await startChat(A.page, carol.username);

  const tail = spawn(process.env.JIBBER_BIN, ['tail', '--server', server.url, '--username', carol.username, '--json', '--count', '1', '--timeout', '60', '--from-start'], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  tail.stdout.on('data', (d) => (out += d));
  const exited = new Promise((resolve) => tail.once('exit', resolve));
  // --from-start: tail catches up on the chat's history first, so the order of these two steps does not matter.
  await send(A.page, 'Hello Rust, from the browser');
  const code = await withTimeout(exited, 90_000, 'jibber tail gets the message');
  assert.equal(code, 0, `jibber tail failed: ${out}`);
  const got = JSON.parse(out.trim().split('\n').at(-1));
  assert.equal(got.text, 'Hello Rust, from the browser');
  assert.equal(got.from, alice.username);
  assert.equal(got.decrypted, true);

  await cli(['send', '--server', server.url, '--username', carol.username, alice.username, 'Hello browser, from Rust'], env);
  await bubble(A.page, 'Hello browser, from Rust').waitFor({ timeout: TIMEOUT });
  await screenshot(A.page, '14-from-rust');
});

test('an expired session says so, and logging in again keeps what the device had', async () => {
  const Q = await newDevice(browser, server);
  await logIn(Q.page, alice.username, alice.password);
  await openChatWith(Q.page, carol.username);
  await bubble(Q.page, 'Hello browser, from Rust').waitFor();
  // Revoke this device's session (its refresh cookie); its 20 s access token then cannot be renewed.
  await Q.page.evaluate(() => fetch('/api/v1/auth/logout', { method: 'POST', credentials: 'same-origin' }));
  await Q.page.getByTestId('session-expired').waitFor({ timeout: 40_000 });
  await screenshot(Q.page, '15-session-expired', 'session-expired');
  await Q.page.locator('input[name=password]').fill(alice.password);
  await Q.page.getByTestId('auth-submit').click();
  await openChatWith(Q.page, carol.username);
  await bubble(Q.page, 'Hello browser, from Rust').waitFor();
  await Q.context.close();
});

// Last before logout: a device that never saw Bob's old keys cannot check his older messages
// (the directory lists only current keys), so the tests above run before the rotation.
test('a contact whose keys change shows a warning until the safety number is checked', async () => {
  const { token } = await opaqueLogin(server.url, bob.username, bob.password);
  const idKey = await webcrypto.subtle.generateKey({ name: 'X25519' }, true, ['deriveBits']);
  const signing = await webcrypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  const raw = async (k) => new Uint8Array(await webcrypto.subtle.exportKey('raw', k.publicKey));
  await api(server.url, 'PUT', '/users/me/keys', {
    publicIdKey: b64(await raw(idKey)),
    publicSigningKey: b64(await raw(signing)),
    // Bob's new bundle is never opened in this test.
    keyBundle: b64(new Uint8Array([1, ...webcrypto.getRandomValues(new Uint8Array(93))])),
  }, token);
  await A.page.reload();
  await openChatWith(A.page, bob.username);
  await A.page.getByTestId('key-warning').waitFor();
  await screenshot(A.page, '13-key-changed', 'key-changed');
  await A.page.getByTestId('safety-open').click();
  await A.page.getByTestId('safety-changed').waitFor();
  await A.page.getByTestId('safety-verified').click();
  await A.page.getByTestId('key-warning').waitFor({ state: 'detached' });
});

test('logout clears the keys and the cache from the device', async () => {
  await A.page.getByTestId('logout').click();
  await A.page.getByTestId('auth-form').waitFor();
  const left = await A.page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name));
  assert.deepEqual(left.filter((n) => n?.startsWith('jibber-')), []);
  await A.page.reload();
  await A.page.getByTestId('auth-form').waitFor();
});

test('the socket used both transports and refreshed its token in band', () => {
  for (const d of [A, B]) {
    assert.ok(d.wire.polling > 0, `long-polling was used: ${JSON.stringify(d.wire)}`);
    assert.ok(d.wire.websocket > 0, `the WebSocket upgrade happened: ${JSON.stringify(d.wire)}`);
  }
  // Access tokens live 20 s here, and Alice's page has been open far longer.
  assert.ok(A.wire.refreshToken > 0, `refreshToken was emitted on the socket: ${JSON.stringify(A.wire)}`);
});

test('no errors in the browser consoles', () => {
  const benign = (e) => /Failed to load resource|ERR_INTERNET_DISCONNECTED|ERR_CONNECTION_REFUSED|WebSocket connection/.test(e);
  assert.deepEqual(A.errors.filter((e) => !benign(e)), []);
  assert.deepEqual(B.errors.filter((e) => !benign(e)), []);
});
