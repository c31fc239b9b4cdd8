// The engine: everything the app does with the server and the device. It owns the REST client,
// the Socket.IO connection, the key ring and the IndexedDB cache, and turns what happens into
// store changes (model.ts). Components call its functions and read the store.

import { io, type Socket } from 'socket.io-client';
import { Api, ApiError, isNetworkError } from './lib/api';
import { logIn, type Session, signUp } from './lib/auth';
import { b64decode } from './lib/bytes';
import { reconnectNow, restartBackoffEvery, socketOptions } from './lib/socket';
import {
  CryptoError,
  type KeyRing,
  type PublicKeys,
  checkKeys,
  current,
  open,
  openSent,
  publicKeysFromWire,
  seal,
} from './lib/crypto';
import * as store from './lib/db';
import type { CachedMessage, Db, OutboxItem, TrustedKeys } from './lib/db';
import { uuidv7 } from './lib/ids';
import type { Change, PublicUser, SendAck, SyncPage, Tokens, WireChat, WireMessage } from './lib/types';
import {
  type AppState,
  type ChatSummary,
  type Presence,
  initialState,
  markMine,
  markOne,
  mergeMessages,
  withMarks,
  withMessages,
} from './model';
import { getState, update } from './store';

const PAGE = 50;
const ACK_TIMEOUT_MS = 15_000;
const TYPING_IDLE_MS = 4_000;
const TYPING_SHOWN_MS = 8_000;

interface Ack<T> {
  ok: boolean;
  data?: T;
  error?: { code: string; message: string; retryAfterMs?: number };
}

let api = newApi();
let db: Db | null = null;
let ring: KeyRing | null = null;
let socket: Socket | null = null;
let refreshTimer: ReturnType<typeof setTimeout> | undefined;
let retryTimer: ReturnType<typeof setTimeout> | undefined;
const contacts = new Map<string, TrustedKeys>();
const typingTimers = new Map<string, ReturnType<typeof setTimeout>>();
const readSent = new Map<string, number>();
// Receipts can overtake the acknowledgement of a send (the server emits them as soon as the peer
// has the message): remember them, so the confirmed message starts with the right mark.
const deliveredEarly = new Map<string, true>();
const peerReadUpTo = new Map<string, number>();

function newApi(): Api {
  return new Api({
    onSessionExpired: () => sessionExpired(),
    onTokens: (t) => tokensChanged(t),
  });
}

const set = (patch: Partial<AppState>) => update((s) => ({ ...s, ...patch }));
const me = (): string => getState().me?.id ?? '';

/** A function that runs `f` once at a time; a call during a run makes it run once more after. */
function singleFlight(f: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | null = null;
  let again = false;
  const run = async (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await f();
      } while (again);
    })().finally(() => {
      running = null;
    });
    return running;
  };
  return run;
}

function report(e: unknown): void {
  if (e instanceof ApiError && e.code === 'SESSION_EXPIRED') return;
  if (isNetworkError(e)) {
    set({ unreachable: 'The server cannot be reached.' });
    return;
  }
  console.warn('jibber:', e instanceof Error ? e.message : e);
  set({ notice: e instanceof Error ? e.message : String(e) });
}

// ------------------------------------------------------------------ sessions

/** On page load: resume the signed-in account from this device, or show the login screen. */
export async function boot(): Promise<void> {
  const account = await store.currentAccount().catch(() => undefined);
  if (!account) return set({ phase: 'signedOut' });
  db = await store.openAccount(account.id);
  ring = await store.loadRing(db);
  if (!ring) return set({ phase: 'signedOut', me: null });
  set({ me: account, phase: 'ready' });
  await loadCachedChats();
  await resume();
}

/** Gets an access token from the refresh cookie and connects; retried by the user or on a timer. */
async function resume(): Promise<void> {
  clearTimeout(retryTimer);
  try {
    const tokens = await api.refresh();
    set({ unreachable: null });
    tokensChanged(tokens);
    connect();
  } catch (e) {
    if (e instanceof ApiError && e.code === 'SESSION_EXPIRED') return;
    report(e);
    retryTimer = setTimeout(() => void resume(), 5_000 + Math.random() * 5_000);
  }
}

/** "Retry now" of the unreachable banner: a connection attempt at once, not after the backoff. */
export function retryNow(): void {
  set({ unreachable: null });
  if (socket) {
    reconnectNow(socket);
  } else if (getState().phase === 'ready') {
    void resume();
  }
}

export async function signUpAndStart(username: string, password: string): Promise<void> {
  await start(await signUp(api, username, password));
}

export async function logInAndStart(username: string, password: string): Promise<void> {
  await start(await logIn(api, username, password));
}

async function start(session: Session): Promise<void> {
  const previous = getState().me?.id;
  db = await store.openAccount(session.user.id);
  ring = session.ring;
  await store.saveRing(db, ring);
  await store.setCurrentAccount(session.user);
  if (previous !== session.user.id) update(() => ({ ...initialState }));
  set({ me: session.user, phase: 'ready', unreachable: null, notice: null });
  await loadCachedChats();
  tokensChanged(session);
  connect();
}

/** Logout: revokes the session, deletes this account's keys, cache and outbox from the device. */
export async function logout(): Promise<void> {
  const id = me();
  await api.raw('POST', '/auth/logout', {}).catch(() => undefined);
  teardown();
  db?.close();
  db = null;
  if (id) await store.deleteAccount(id);
  await store.setCurrentAccount(null);
  api = newApi();
  update(() => ({ ...initialState, phase: 'signedOut' }));
}

function teardown(): void {
  clearTimeout(refreshTimer);
  clearTimeout(retryTimer);
  socket?.removeAllListeners();
  socket?.disconnect();
  socket = null;
  ring = null;
  contacts.clear();
  readSent.clear();
  deliveredEarly.clear();
  peerReadUpTo.clear();
}

function sessionExpired(): void {
  socket?.removeAllListeners();
  socket?.disconnect();
  socket = null;
  clearTimeout(refreshTimer);
  set({ phase: 'expired', connection: 'offline' });
}

/** Every new access token: schedule the next refresh, and hand it to the socket in band. */
function tokensChanged(t: Tokens): void {
  clearTimeout(refreshTimer);
  const ms = Math.max(1_000, t.expiresIn * 1000 * 0.75);
  refreshTimer = setTimeout(() => {
    api.refresh().catch((e) => {
      if (isNetworkError(e)) refreshTimer = setTimeout(() => tokensChanged({ ...t, expiresIn: 8 }), 0);
    });
  }, ms);
  if (socket?.connected) {
    socket
      .timeout(ACK_TIMEOUT_MS)
      .emitWithAck('refreshToken', { token: t.accessToken })
      .catch(() => undefined);
  }
}

// ------------------------------------------------------------------ realtime

function connect(): void {
  if (socket) return;
  const s = io(socketOptions(() => api.accessToken ?? ''));
  restartBackoffEvery(s);
  socket = s;
  set({ connection: 'connecting' });

  s.on('connect', () => {
    set({ connection: 'online', unreachable: null });
    const active = getState().activeChatId;
    if (active) s.emit('setActiveChatId', { activeChatId: active });
    void catchUp().then(() => flushOutbox());
  });
  s.on('disconnect', (reason) => {
    set({ connection: 'connecting', presence: {} });
    // The server closed this socket (a session that expired on it): refresh, then reconnect.
    if (reason === 'io server disconnect') void reconnectWithFreshToken();
  });
  s.on('connect_error', (err: Error & { data?: { code?: string } }) => {
    const code = err.data?.code;
    if (code === 'TOKEN_EXPIRED' || code === 'INVALID_TOKEN' || code === 'UNAUTHENTICATED') {
      void reconnectWithFreshToken();
      return;
    }
    set({ connection: navigator.onLine ? 'connecting' : 'offline', unreachable: 'The server cannot be reached.' });
    // A refusal the manager does not retry by itself: try again after a pause, forever.
    if (!s.active) setTimeout(() => socket === s && s.connect(), 2_000 + Math.random() * 3_000);
  });
  s.on('sessionExpired', () => void reconnectWithFreshToken());
  s.on('syncRequired', () => void catchUp());
  s.on('receivedMessage', (m: WireMessage, ack?: (r: unknown) => void) => {
    void receive(m).finally(() => ack?.({ ok: true }));
  });
  s.on('messageSent', (a: SendAck) => void confirmSent(a));
  s.on('messageDelivered', (d: { messageId: string; chatId: string }) => void delivered(d.chatId, d.messageId));
  s.on('messageRead', (r: { chatId: string; upToSequence: number; reader?: string }) =>
    void readBy(r.chatId, r.reader ?? '', r.upToSequence),
  );
  s.on('newConversation', (c: WireChat) => void putChats([c]));
  s.on('userTyping', (t: { chatId: string; userId: string; isTyping: boolean }) => showTyping(t.chatId, t.isTyping));
  s.on('onlineUsers', (o: { userIds: string[] }) =>
    set({ presence: Object.fromEntries(o.userIds.map((id) => [id, 'online' as Presence])) }),
  );
  const presence = (p: Presence) => (u: { userId: string }) =>
    update((st) => ({ ...st, presence: { ...st.presence, [u.userId]: p } }));
  s.on('userOnline', presence('online'));
  s.on('userBack', presence('online'));
  s.on('userAway', presence('away'));
  s.on('userOffline', presence('offline'));
}

const reconnectWithFreshToken = singleFlight(async () => {
  try {
    await api.refresh();
  } catch (e) {
    if (!isNetworkError(e)) return;
    await new Promise((r) => setTimeout(r, 2_000 + Math.random() * 3_000));
  }
  if (socket && !socket.connected) socket.connect();
});

if (typeof window !== 'undefined') {
  window.addEventListener('online', () => retryNow());
  window.addEventListener('offline', () => set({ connection: 'offline' }));
  document.addEventListener('visibilitychange', () => {
    const id = getState().activeChatId;
    if (id && document.visibilityState === 'visible') markRead(id);
  });
}

// ------------------------------------------------------------------ catch-up

/** Walks `GET /sync` from the last cursor, then refreshes the chat list (unread counts). */
export const catchUp = singleFlight(async () => {
  if (!db) return;
  try {
    let cursor = await store.getCursor(db);
    for (;;) {
      const page = await api.get<SyncPage>(`/sync?since=${cursor}&limit=200`);
      await applyChanges(page.changes);
      cursor = page.nextCursor;
      if (db) await store.setCursor(db, cursor);
      if (!page.hasMore) break;
    }
    await loadChats();
    const active = getState().activeChatId;
    if (active) markRead(active);
  } catch (e) {
    report(e);
  }
});

async function applyChanges(changes: Change[]): Promise<void> {
  const chats = changes.flatMap((c) => (c.type === 'chat' ? [c.chat] : []));
  if (chats.length) await putChats(chats);
  const messages = await Promise.all(changes.flatMap((c) => (c.type === 'message' ? [decrypt(c.message)] : [])));
  await storeMessages(messages, false);
  for (const c of changes) {
    if (c.type === 'delivered') await delivered(c.chatId, c.messageId);
    if (c.type === 'read') await readBy(c.chatId, c.reader, c.upToSequence);
  }
}

async function loadChats(): Promise<void> {
  const all: WireChat[] = [];
  let cursor = '';
  for (;;) {
    const page = await api.call<WireChat[]>('GET', `/chats?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    all.push(...page.data);
    if (!page.pagination?.hasMore || !page.pagination.nextCursor) break;
    cursor = page.pagination.nextCursor;
  }
  await putChats(all, true);
}

/** Stores chats and shows them; `authoritative` takes the server's unread counts. */
async function putChats(chats: WireChat[], authoritative = false): Promise<void> {
  if (!db) return;
  for (const c of chats) {
    await trust(c.otherUser);
    await db.put('chats', c);
  }
  const lasts = await Promise.all(chats.map((c) => (c.lastMessage ? decrypt(c.lastMessage) : undefined)));
  update((s) => {
    const next = { ...s.chats };
    chats.forEach((c, i) => {
      const prev = next[c.id];
      const last = lasts[i] ?? prev?.last;
      next[c.id] = {
        id: c.id,
        other: c.otherUser,
        unread: authoritative || !prev ? c.unreadCount : prev.unread,
        lastSequence: Math.max(c.lastSequence, prev?.lastSequence ?? 0),
        updatedAt: [c.updatedAt, prev?.updatedAt ?? ''].sort().at(-1) ?? c.updatedAt,
        last: prev?.last && last && prev.last.seq > last.seq ? prev.last : last,
      };
    });
    return { ...s, chats: next };
  });
}

async function loadCachedChats(): Promise<void> {
  if (!db) return;
  const d = db;
  for (const c of await d.getAll('contacts')) contacts.set(c.userId, c);
  const chats = await d.getAll('chats');
  const summaries: Record<string, ChatSummary> = {};
  for (const c of chats) {
    const [last] = (await store.chatMessages(d, c.id, 1)).slice(-1);
    summaries[c.id] = {
      id: c.id,
      other: c.otherUser,
      unread: c.unreadCount,
      lastSequence: c.lastSequence,
      updatedAt: last && last.createdAt > c.updatedAt ? last.createdAt : c.updatedAt,
      last,
    };
  }
  const keyChanged = Object.fromEntries([...contacts.values()].filter((c) => c.changed).map((c) => [c.userId, true]));
  set({ chats: summaries, keyChanged });
}

// ------------------------------------------------------------------ keys of contacts (TOFU)

const pairOf = (k: { idKey: string; signingKey: string }): PublicKeys | null => {
  try {
    return publicKeysFromWire(k.idKey, k.signingKey);
  } catch {
    return null;
  }
};

/** Records a user's keys as seen now (docs/crypto.md §7.2): first use, unchanged, or changed. */
async function trust(user: PublicUser): Promise<TrustedKeys> {
  const fetched = { idKey: user.publicIdKey, signingKey: user.publicSigningKey };
  const prev = contacts.get(user.id) ?? (db ? await db.get('contacts', user.id) : undefined);
  const last = prev?.keys.at(-1);
  const fetchedPair = pairOf(fetched);
  let next: TrustedKeys;
  if (!fetchedPair) {
    next = prev ?? { userId: user.id, keys: [], changed: false, user };
  } else {
    const check = checkKeys(last ? pairOf(last) : null, fetchedPair);
    next =
      check.result === 'changed'
        ? { userId: user.id, keys: [...(prev?.keys ?? []), fetched], changed: true, user }
        : { userId: user.id, keys: prev?.keys.length ? prev.keys : [fetched], changed: prev?.changed ?? false, user };
  }
  contacts.set(user.id, next);
  if (db) await db.put('contacts', next);
  if (next.changed !== (prev?.changed ?? false)) {
    update((s) => ({ ...s, keyChanged: { ...s.keyChanged, [user.id]: next.changed } }));
  }
  return next;
}

/** The user's keys from the directory, fetched now. */
async function refetch(userId: string): Promise<TrustedKeys> {
  return trust(await api.get<PublicUser>(`/users/${userId}`));
}

async function trusted(userId: string): Promise<TrustedKeys> {
  return contacts.get(userId) ?? refetch(userId);
}

export function contactKeys(userId: string): TrustedKeys | undefined {
  return contacts.get(userId);
}

export function myKeys(): PublicKeys | null {
  return ring ? current(ring) : null;
}

/** The user has compared the safety number: the warning goes away. */
export async function acknowledgeKeyChange(userId: string): Promise<void> {
  const c = contacts.get(userId);
  if (!c) return;
  const next = { ...c, changed: false };
  contacts.set(userId, next);
  if (db) await db.put('contacts', next);
  update((s) => ({ ...s, keyChanged: { ...s.keyChanged, [userId]: false } }));
}

// ------------------------------------------------------------------ messages in

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Opens a message; one that cannot be opened is kept with its error code, never dropped. */
async function decrypt(m: WireMessage): Promise<CachedMessage> {
  const base: CachedMessage = {
    id: m.id,
    chatId: m.chatId,
    seq: m.sequenceNumber,
    sender: m.sender,
    receiver: m.receiver,
    tempMessageId: m.tempMessageId,
    clientTimestamp: m.clientTimestamp,
    createdAt: m.createdAt,
    status: m.deliveryStatus,
    text: null,
  };
  if (db && m.sender === me()) {
    const known = await store.messageByTemp(db, m.tempMessageId);
    if (known?.text != null) return { ...base, text: known.text };
  }
  const attempt = async (refresh: boolean): Promise<Uint8Array> => {
    if (!ring) throw new CryptoError('KEY_MISMATCH', 'signed out');
    const peer = m.sender === me() ? m.receiver : m.sender;
    const keys = refresh ? await refetch(peer) : await trusted(peer);
    const pairs = keys.keys.map(pairOf).filter((k): k is PublicKeys => k !== null);
    return m.sender === me()
      ? openSent(ring, pairs.map((p) => p.idKey), m, m)
      : open(ring, pairs, m, m);
  };
  try {
    let plain: Uint8Array;
    try {
      plain = await attempt(false);
    } catch (e) {
      // The peer may have rotated keys since we last looked: ask the directory once.
      if (!(e instanceof CryptoError && e.code === 'KEY_MISMATCH')) throw e;
      plain = await attempt(true);
    }
    return { ...base, text: decoder.decode(plain) };
  } catch (e) {
    const code = e instanceof CryptoError ? e.code : e instanceof TypeError ? 'INVALID_UTF8' : isNetworkError(e) ? 'KEYS_UNAVAILABLE' : 'INVALID_INPUT';
    return { ...base, error: code };
  }
}

async function storeMessages(messages: CachedMessage[], countUnread: boolean): Promise<void> {
  if (!messages.length || !db) return;
  await store.putMessages(db, messages);
  const byChat = new Map<string, CachedMessage[]>();
  for (const m of messages) byChat.set(m.chatId, [...(byChat.get(m.chatId) ?? []), m]);
  for (const [chatId, list] of byChat) {
    if (!getState().chats[chatId]) await loadChats().catch(report);
    update((s) => withMessages(s, chatId, list, countUnread));
  }
}

async function receive(m: WireMessage): Promise<void> {
  await storeMessages([await decrypt(m)], true);
  if (m.sender !== me()) showTyping(m.chatId, false);
  if (getState().activeChatId === m.chatId) markRead(m.chatId);
}

async function delivered(chatId: string, messageId: string): Promise<void> {
  deliveredEarly.set(messageId, true);
  if (deliveredEarly.size > 500) deliveredEarly.delete(deliveredEarly.keys().next().value as string);
  if (db) await store.updateMessages(db, chatId, (m) => m.id === messageId, (m) => ({ ...m, status: m.status === 'read' ? 'read' : 'delivered' }));
  update((s) => withMarks(s, chatId, (l) => markOne(l, messageId, 'delivered')));
}

async function readBy(chatId: string, reader: string, upTo: number): Promise<void> {
  if (reader === me()) {
    // Read on this or another of my devices: the badge goes.
    update((s) => {
      const c = s.chats[chatId];
      return c && upTo >= c.lastSequence ? { ...s, chats: { ...s.chats, [chatId]: { ...c, unread: 0 } } } : s;
    });
    return;
  }
  peerReadUpTo.set(chatId, Math.max(upTo, peerReadUpTo.get(chatId) ?? 0));
  const mine = me();
  if (db) await store.updateMessages(db, chatId, (m) => m.sender === mine && m.seq <= upTo, (m) => ({ ...m, status: 'read' }));
  update((s) => withMarks(s, chatId, (l) => markMine(l, mine, upTo, 'read')));
}

function showTyping(chatId: string, isTyping: boolean): void {
  clearTimeout(typingTimers.get(chatId));
  update((s) => ({ ...s, typing: { ...s.typing, [chatId]: isTyping } }));
  if (isTyping) typingTimers.set(chatId, setTimeout(() => showTyping(chatId, false), TYPING_SHOWN_MS));
}

// ------------------------------------------------------------------ conversations

export async function openChat(chatId: string | null): Promise<void> {
  set({ activeChatId: chatId });
  socket?.emit('setActiveChatId', { activeChatId: chatId ?? '' });
  if (!chatId || !db) return;
  const cached = await store.chatMessages(db, chatId, PAGE);
  update((s) => ({
    ...s,
    views: {
      ...s.views,
      [chatId]: { messages: mergeMessages(s.views[chatId]?.messages ?? [], cached), hasMore: (cached.find((m) => m.seq)?.seq ?? 1) > 1, loadingOlder: false },
    },
  }));
  const chat = getState().chats[chatId];
  const newestCached = cached.filter((m) => m.seq).at(-1)?.seq ?? 0;
  if (chat && chat.lastSequence > newestCached) await fetchHistory(chatId).catch(report);
  markRead(chatId);
}

async function fetchHistory(chatId: string, before?: number): Promise<void> {
  const q = before ? `&before=${before}` : '';
  const page = await api.call<WireMessage[]>('GET', `/messages/${chatId}?limit=${PAGE}${q}`);
  const list = await Promise.all(page.data.map(decrypt));
  await storeMessages(list, false);
  update((s) => {
    const v = s.views[chatId];
    return v ? { ...s, views: { ...s.views, [chatId]: { ...v, hasMore: page.pagination?.hasMore ?? false } } } : s;
  });
}

/** Older messages, when the user scrolls to the top: from the device first, then the server. */
export async function loadOlder(chatId: string): Promise<void> {
  const v = getState().views[chatId];
  if (!db || !v || !v.hasMore || v.loadingOlder) return;
  const first = v.messages.find((m) => m.seq)?.seq ?? Infinity;
  const setLoading = (loadingOlder: boolean) =>
    update((s) => {
      const cur = s.views[chatId];
      return cur ? { ...s, views: { ...s.views, [chatId]: { ...cur, loadingOlder } } } : s;
    });
  setLoading(true);
  try {
    const cached = await store.chatMessages(db, chatId, PAGE, first);
    const contiguous = cached.length > 0 && cached.at(-1)?.seq === first - 1;
    if (contiguous && cached.length === PAGE) {
      update((s) => withMessages(s, chatId, cached, false));
    } else {
      await fetchHistory(chatId, first === Infinity ? undefined : first);
    }
    update((s) => {
      const cur = s.views[chatId];
      const lowest = cur?.messages.find((m) => m.seq)?.seq ?? 1;
      return cur ? { ...s, views: { ...s.views, [chatId]: { ...cur, hasMore: lowest > 1 } } } : s;
    });
  } catch (e) {
    report(e);
  } finally {
    setLoading(false);
  }
}

/** Tells the peer (and my other devices) that everything in the open chat is read. */
export function markRead(chatId: string): void {
  if (typeof document !== 'undefined' && document.visibilityState !== 'visible') return;
  const s = getState();
  const chat = s.chats[chatId];
  const upTo = Math.max(0, ...(s.views[chatId]?.messages ?? []).filter((m) => m.sender !== me() && m.seq).map((m) => m.seq));
  if (chat?.unread) update((st) => ({ ...st, chats: { ...st.chats, [chatId]: { ...chat, unread: 0 } } }));
  if (!upTo || (readSent.get(chatId) ?? 0) >= upTo || !socket?.connected) return;
  readSent.set(chatId, upTo);
  socket.timeout(ACK_TIMEOUT_MS).emitWithAck('markMessageAsRead', { chatId, upToSequence: upTo }).catch(() => readSent.delete(chatId));
}

export async function searchContacts(search: string): Promise<PublicUser[]> {
  return api.get<PublicUser[]>(`/contacts?limit=50&search=${encodeURIComponent(search)}`);
}

export async function startChat(user: PublicUser): Promise<string> {
  const chat = await api.post<WireChat>('/chats', { userId: user.id });
  await putChats([chat]);
  await openChat(chat.id);
  return chat.id;
}

// ------------------------------------------------------------------ typing

let typingChat: string | null = null;
let typingSentAt = 0;
let typingIdle: ReturnType<typeof setTimeout> | undefined;

export function typing(chatId: string): void {
  const now = Date.now();
  if (typingChat !== chatId || now - typingSentAt > 2_500) {
    typingChat = chatId;
    typingSentAt = now;
    socket?.emit('typing', { chatId, isTyping: true });
  }
  clearTimeout(typingIdle);
  typingIdle = setTimeout(() => stopTyping(chatId), TYPING_IDLE_MS);
}

function stopTyping(chatId: string): void {
  clearTimeout(typingIdle);
  if (typingChat !== chatId) return;
  typingChat = null;
  socket?.emit('typing', { chatId, isTyping: false });
}

// ------------------------------------------------------------------ messages out (the outbox)

/** Queues a message: it is in IndexedDB before this returns, so nothing typed is lost. */
export async function send(chatId: string, text: string): Promise<void> {
  const chat = getState().chats[chatId];
  if (!db || !chat || !text.trim()) return;
  stopTyping(chatId);
  const item: OutboxItem = {
    tempMessageId: uuidv7(),
    chatId,
    receiver: chat.other.id,
    text,
    clientTimestamp: new Date().toISOString(),
  };
  await db.put('outbox', item);
  await storeMessages([pendingOf(item)], false);
  void flushOutbox();
}

const pendingOf = (o: OutboxItem): CachedMessage => ({
  id: `tmp:${o.tempMessageId}`,
  chatId: o.chatId,
  seq: 0,
  sender: me(),
  receiver: o.receiver,
  tempMessageId: o.tempMessageId,
  clientTimestamp: o.clientTimestamp,
  createdAt: o.clientTimestamp,
  status: o.failed ? 'failed' : 'sending',
  text: o.text,
  error: o.failed,
});

/** "Retry" on a failed message. */
export async function retry(tempMessageId: string): Promise<void> {
  const item = db ? await db.get('outbox', tempMessageId) : undefined;
  if (!db || !item) return;
  delete item.failed;
  await db.put('outbox', item);
  await storeMessages([pendingOf(item)], false);
  void flushOutbox();
}

/** Drops a failed message the user gives up on. */
export async function discard(tempMessageId: string): Promise<void> {
  if (!db) return;
  const item = await db.get('outbox', tempMessageId);
  await db.delete('outbox', tempMessageId);
  await db.delete('messages', `tmp:${tempMessageId}`);
  if (item) {
    update((s) => {
      const v = s.views[item.chatId];
      return v
        ? { ...s, views: { ...s.views, [item.chatId]: { ...v, messages: v.messages.filter((m) => m.tempMessageId !== tempMessageId) } } }
        : s;
    });
  }
}

const RETRYABLE = new Set(['RATE_LIMITED', 'SERVICE_UNAVAILABLE', 'INTERNAL', 'TOKEN_EXPIRED', 'INVALID_TOKEN', 'UNAUTHENTICATED']);

/** Sends what the outbox holds, in order, while the socket is up. Safe to repeat: the server dedupes by tempMessageId. */
export const flushOutbox = singleFlight(async () => {
  if (!db || !ring) return;
  const items = (await db.getAll('outbox')).filter((o) => !o.failed).sort((a, b) => a.clientTimestamp.localeCompare(b.clientTimestamp));
  for (const item of items) {
    if (!socket?.connected || !ring) return;
    let ack: Ack<SendAck>;
    try {
      const keys = await trusted(item.receiver);
      const receiverKeys = keys.keys.at(-1);
      const idKey = receiverKeys ? b64decode(receiverKeys.idKey) : null;
      if (!idKey) throw new CryptoError('KEY_MISMATCH', 'no key for the receiver');
      const ctx = { chatId: item.chatId, sender: me(), receiver: item.receiver, clientTimestamp: item.clientTimestamp, tempMessageId: item.tempMessageId };
      const envelope = await seal(current(ring), ctx, idKey, new TextEncoder().encode(item.text));
      const payload = { chatId: ctx.chatId, receiver: ctx.receiver, clientTimestamp: ctx.clientTimestamp, tempMessageId: ctx.tempMessageId, ...envelope };
      ack = (await socket.timeout(ACK_TIMEOUT_MS).emitWithAck('sendMessage', payload)) as Ack<SendAck>;
    } catch (e) {
      if (e instanceof CryptoError) {
        await fail(item, `Cannot encrypt: ${e.code}`);
        continue;
      }
      // No ack in time or no network: it stays queued and goes on the next connect.
      if (!isNetworkError(e)) setTimeout(() => void flushOutbox(), 3_000);
      return;
    }
    if (ack.ok && ack.data) {
      await confirmSent(ack.data);
    } else if (ack.error && RETRYABLE.has(ack.error.code)) {
      await new Promise((r) => setTimeout(r, ack.error?.retryAfterMs ?? 2_000));
      if (ack.error.code !== 'RATE_LIMITED') await reconnectWithFreshToken();
      return void setTimeout(() => void flushOutbox(), 0);
    } else {
      await fail(item, refusal(ack.error?.code, ack.error?.message));
    }
  }
});

/** What a refused message says to the user: what happened and what to do. */
function refusal(code?: string, message?: string): string {
  switch (code) {
    case 'PAYLOAD_TOO_LARGE':
      return 'too long to send (at most about 64 KB); shorten it or split it';
    case 'NOT_FOUND':
    case 'FORBIDDEN':
      return 'this chat is no longer available';
    default:
      return message ?? 'the server refused it';
  }
}

async function fail(item: OutboxItem, why: string): Promise<void> {
  if (!db) return;
  const failed = { ...item, failed: why };
  await db.put('outbox', failed);
  await storeMessages([pendingOf(failed)], false);
}

/** The server has the message (ack or `messageSent`): it leaves the outbox. */
async function confirmSent(a: SendAck): Promise<void> {
  if (!db) return;
  const item = await db.get('outbox', a.tempMessageId);
  const known = item ? undefined : await store.messageByTemp(db, a.tempMessageId);
  const text = item?.text ?? known?.text;
  if (text == null || (known && known.seq)) return;
  const base = item ?? (known as CachedMessage);
  const sent: CachedMessage = {
    id: a.messageId,
    chatId: a.chatId,
    seq: a.sequenceNumber,
    sender: me(),
    receiver: base.receiver,
    tempMessageId: a.tempMessageId,
    clientTimestamp: base.clientTimestamp,
    createdAt: a.createdAt,
    status: earlyMark(a),
    text,
  };
  await db.delete('outbox', a.tempMessageId);
  await storeMessages([sent], false);
  // A receipt that arrived while this was being stored.
  const late = earlyMark(a);
  if (late !== sent.status) await storeMessages([{ ...sent, status: late }], false);
  deliveredEarly.delete(a.messageId);
}

function earlyMark(a: SendAck): CachedMessage['status'] {
  if ((peerReadUpTo.get(a.chatId) ?? 0) >= a.sequenceNumber) return 'read';
  return deliveredEarly.has(a.messageId) ? 'delivered' : 'sent';
}

/** How many messages wait in the outbox (for the e2e tests and the UI). */
export async function outboxSize(): Promise<number> {
  return db ? db.count('outbox') : 0;
}

// ------------------------------------------------------------------ drafts

/** What is typed but not sent survives a reload too. */
export async function saveDraft(chatId: string, text: string): Promise<void> {
  if (db) await db.put('meta', text, `draft:${chatId}`);
}

export async function loadDraft(chatId: string): Promise<string> {
  return db ? (((await db.get('meta', `draft:${chatId}`)) as string | undefined) ?? '') : '';
}
