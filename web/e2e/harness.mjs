// The E2E harness: the real `jibber` binary (JIBBER_BIN) on a temp data dir, and Debian's
// Chromium (/usr/bin/chromium, never downloaded) driven by playwright-core.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SCREENSHOTS = path.join(here, 'screenshots');
// With JIBBER_DOCS_SCREENSHOTS=1 (`npm run screenshots`), the main screens are also written to
// docs/screenshots/ under the names the tests give them.
export const DOCS_SCREENSHOTS = process.env.JIBBER_DOCS_SCREENSHOTS ? path.join(here, '../../docs/screenshots') : null;
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const TIMEOUT = Number(process.env.JIBBER_E2E_TIMEOUT_MS ?? 20_000);

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The server: start, stop (SIGTERM, wait for exit), start again on the same port and data dir. */
export class Server {
  constructor(env = {}) {
    const bin = process.env.JIBBER_BIN;
    if (!bin) throw new Error('JIBBER_BIN is not set: the path of the built `jibber` binary');
    this.bin = bin;
    this.dir = mkdtempSync(path.join(tmpdir(), 'jibber-e2e-'));
    this.env = env;
    this.port = 0;
    this.child = null;
    this.log = [];
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    const child = spawn(this.bin, ['serve', '--host', '127.0.0.1', '--port', String(this.port), '--data-dir', this.dir], {
      env: { PATH: process.env.PATH, JIBBER_LOG_LEVEL: 'warn', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', resolve));
    child.stderr.on('data', (d) => this.log.push(String(d)));
    const lines = createInterface({ input: child.stdout });
    const port = await withTimeout(
      new Promise((resolve, reject) => {
        lines.on('line', (line) => {
          const m = line.match(/running at http:\/\/127\.0\.0\.1:(\d+)\//);
          if (m) resolve(Number(m[1]));
        });
        child.once('exit', (code) => reject(new Error(`jibber exited with ${code}: ${this.log.join('')}`)));
      }),
      30_000,
      'jibber prints its address',
    );
    this.port = port;
    return this.url;
  }

  async stop() {
    if (!this.child) return;
    this.child.kill('SIGTERM');
    await withTimeout(this.exited, 30_000, 'jibber stops on SIGTERM');
    this.child = null;
  }

  async dispose() {
    await this.stop().catch(() => this.child?.kill('SIGKILL'));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function withTimeout(promise, ms, what) {
  let timer;
  try {
    return await Promise.race([
      promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export async function launch(extraArgs = []) {
  return chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...extraArgs], headless: true });
}

/**
 * A browser context on the server, with console errors collected. `clock: true` installs
 * Playwright's clock (running at first), so that a test can pause the page's timers.
 */
export async function newDevice(browser, server, options = {}, { clock = false } = {}) {
  const context = await browser.newContext({ baseURL: server.url, viewport: { width: 1100, height: 720 }, ...options });
  context.setDefaultTimeout(TIMEOUT);
  if (clock) await context.clock.install();
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  // What the Socket.IO client does on the wire: the transports it used, and in-band token refreshes.
  const wire = { polling: 0, websocket: 0, refreshToken: 0 };
  page.on('request', (r) => {
    if (r.url().includes('/socket.io/') && r.url().includes('transport=polling')) wire.polling++;
  });
  page.on('websocket', (ws) => {
    if (!ws.url().includes('/socket.io/')) return;
    wire.websocket++;
    ws.on('framesent', (f) => {
      if (String(f.payload).includes('"refreshToken"')) wire.refreshToken++;
    });
  });
  await page.goto('/');
  return { context, page, errors, wire };
}

/** A screenshot in e2e/screenshots/; one with a `docs` name also goes to docs/screenshots/ when asked. */
export async function screenshot(page, name, docs) {
  const file = path.join(SCREENSHOTS, `${name}.png`);
  mkdirSync(path.dirname(file), { recursive: true });
  const png = await page.screenshot({ path: file });
  if (docs && DOCS_SCREENSHOTS) {
    mkdirSync(DOCS_SCREENSHOTS, { recursive: true });
    writeFileSync(path.join(DOCS_SCREENSHOTS, `${docs}.png`), png);
  }
}

export async function signUp(page, username, password) {
  await page.getByTestId('tab-signup').click();
  await page.locator('input[name=username]').fill(username);
  await page.locator('input[name=password]').fill(password);
  await page.getByTestId('auth-submit').click();
  await page.getByTestId('me').filter({ hasText: username }).waitFor();
  await page.getByTestId('connection').filter({ hasText: 'Connected' }).waitFor();
}

export async function logIn(page, username, password) {
  await page.locator('input[name=username]').fill(username);
  await page.locator('input[name=password]').fill(password);
  await page.getByTestId('auth-submit').click();
  await page.getByTestId('me').filter({ hasText: username }).waitFor();
}

export async function startChat(page, username) {
  await page.getByTestId('new-chat').click();
  await page.getByTestId('contact-search').fill(username);
  await page.locator(`[data-testid=contact][data-username="${username}"]`).click();
  await page.getByTestId('conversation').waitFor();
}

export async function openChatWith(page, username) {
  await page.locator(`[data-testid=chat-item][data-username="${username}"]`).click();
  await page.getByTestId('conversation').waitFor();
}

export async function send(page, text) {
  await page.getByTestId('composer').fill(text);
  await page.getByTestId('send').click();
}

/** The message bubble with exactly this text. */
export const bubble = (page, text) =>
  page.locator('[data-testid=message]').filter({ has: page.getByTestId('text').getByText(text, { exact: true }) });

export async function waitStatus(page, text, status) {
  await page.locator(`[data-testid=message][data-status=${status}]`).filter({ hasText: text }).waitFor();
}

// ---- a second client in Node, for what the UI cannot do (craft a bad message, rotate keys)

const opaque = await import('@serenity-kit/opaque');

export async function api(base, method, route, body, token) {
  const res = await fetch(`${base}/api/v1${route}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!json.success) throw new Error(`${method} ${route}: ${res.status} ${JSON.stringify(json.error)}`);
  return json.data;
}

/** OPAQUE login with @serenity-kit/opaque: the user's access token. */
export async function opaqueLogin(base, username, password) {
  await opaque.ready;
  const { clientLoginState, startLoginRequest } = opaque.client.startLogin({ password });
  const start = await api(base, 'POST', '/auth/login/start', { username, startLoginRequest });
  const finish = opaque.client.finishLogin({ clientLoginState, loginResponse: start.loginResponse, password });
  if (!finish) throw new Error('login failed');
  const res = await api(base, 'POST', '/auth/login/finish', { loginId: start.loginId, finishLoginRequest: finish.finishLoginRequest });
  return { token: res.accessToken, user: res.user };
}

export const b64 = (bytes) => Buffer.from(bytes).toString('base64url');
