// The device's IndexedDB: one database per account (`jibber-<userId>`) holding the key ring as
// non-extractable CryptoKeys, the decrypted message cache, the chats, the outbox, the contacts'
// trusted keys and the sync cursor. A small `jibber` database remembers which account is signed
// in, so a reload resumes without the password. Logout deletes the account's database.

import { type DBSchema, type IDBPDatabase, deleteDB, openDB } from 'idb';
import type { Generation, KeyRing } from './crypto';
import type { Me, PublicUser, WireChat } from './types';

export type MessageState = 'sending' | 'failed' | 'sent' | 'delivered' | 'read';

/** A message as this device keeps and shows it. */
export interface CachedMessage {
  /** The server id, or `tmp:<tempMessageId>` while it is in the outbox. */
  id: string;
  chatId: string;
  /** 0 until the server assigns one. */
  seq: number;
  sender: string;
  receiver: string;
  tempMessageId: string;
  clientTimestamp: string;
  createdAt: string;
  status: MessageState;
  /** The plaintext, or null when the message could not be opened. */
  text: string | null;
  /** Why it could not be opened (a docs/crypto.md §8 code), or why sending failed. */
  error?: string;
}

export interface OutboxItem {
  tempMessageId: string;
  chatId: string;
  receiver: string;
  text: string;
  clientTimestamp: string;
  failed?: string;
}

export interface TrustedKeys {
  userId: string;
  /** Every (idKey, signingKey) pair trusted for this user, base64url, oldest first. */
  keys: { idKey: string; signingKey: string }[];
  /** Set when the keys changed and the user has not looked at the safety number since. */
  changed: boolean;
  user: PublicUser;
}

interface StoredGeneration {
  idKey: Uint8Array;
  signingKey: Uint8Array;
  idPrivate: CryptoKey;
  signingPrivate: CryptoKey;
}

interface Schema extends DBSchema {
  meta: { key: string; value: unknown };
  chats: { key: string; value: WireChat };
  messages: { key: string; value: CachedMessage; indexes: { byChat: [string, number, string]; byTemp: string } };
  outbox: { key: string; value: OutboxItem };
  contacts: { key: string; value: TrustedKeys };
}

export type Db = IDBPDatabase<Schema>;

const dbName = (userId: string) => `jibber-${userId}`;

export function openAccount(userId: string): Promise<Db> {
  return openDB<Schema>(dbName(userId), 1, {
    upgrade(db) {
      db.createObjectStore('meta');
      db.createObjectStore('chats', { keyPath: 'id' });
      const messages = db.createObjectStore('messages', { keyPath: 'id' });
      messages.createIndex('byChat', ['chatId', 'seq', 'createdAt']);
      messages.createIndex('byTemp', 'tempMessageId');
      db.createObjectStore('outbox', { keyPath: 'tempMessageId' });
      db.createObjectStore('contacts', { keyPath: 'userId' });
    },
  });
}

export const deleteAccount = (userId: string): Promise<void> => deleteDB(dbName(userId));

// ---- which account this browser is signed in to

interface Pointer extends DBSchema {
  current: { key: string; value: Me };
}

const pointer = () =>
  openDB<Pointer>('jibber', 1, {
    upgrade(db) {
      db.createObjectStore('current');
    },
  });

export async function currentAccount(): Promise<Me | undefined> {
  return (await pointer()).get('current', 'me');
}

export async function setCurrentAccount(me: Me | null): Promise<void> {
  const db = await pointer();
  if (me) await db.put('current', me, 'me');
  else await db.delete('current', 'me');
}

// ---- keys

export async function saveRing(db: Db, ring: KeyRing): Promise<void> {
  const stored: StoredGeneration[] = ring.generations.map((g) => ({
    idKey: g.idKey,
    signingKey: g.signingKey,
    idPrivate: g.idPrivate,
    signingPrivate: g.signingPrivate,
  }));
  await db.put('meta', stored, 'ring');
}

export async function loadRing(db: Db): Promise<KeyRing | null> {
  const stored = (await db.get('meta', 'ring')) as StoredGeneration[] | undefined;
  if (!stored?.length) return null;
  const generations: Generation[] = stored.map((g) => ({
    idKey: new Uint8Array(g.idKey),
    signingKey: new Uint8Array(g.signingKey),
    idPrivate: g.idPrivate,
    signingPrivate: g.signingPrivate,
  }));
  return { generations };
}

// ---- cursor

export async function getCursor(db: Db): Promise<number> {
  return ((await db.get('meta', 'cursor')) as number | undefined) ?? 0;
}

export const setCursor = (db: Db, cursor: number) => db.put('meta', cursor, 'cursor');

// ---- messages

/** The latest `limit` messages of a chat before `beforeSeq` (exclusive), pending ones included. */
export async function chatMessages(db: Db, chatId: string, limit: number, beforeSeq = Infinity): Promise<CachedMessage[]> {
  const range = IDBKeyRange.bound([chatId, -Infinity, ''], [chatId, beforeSeq === Infinity ? Infinity : beforeSeq, ''], false, true);
  const out: CachedMessage[] = [];
  let cursor = await db.transaction('messages').store.index('byChat').openCursor(range, 'prev');
  // Pending messages (seq 0) sort first in the index; read them separately so they stay last.
  while (cursor && out.length < limit) {
    if (cursor.value.seq > 0) out.push(cursor.value);
    cursor = await cursor.continue();
  }
  out.reverse();
  if (beforeSeq === Infinity) {
    const pending = await db.getAll('messages', IDBKeyRange.bound(`tmp:`, `tmp;`));
    out.push(...pending.filter((m) => m.chatId === chatId).sort((a, b) => a.createdAt.localeCompare(b.createdAt)));
  }
  return out;
}

/** Stores messages, replacing the pending copy of a message once the server has it. */
export async function putMessages(db: Db, messages: CachedMessage[]): Promise<void> {
  const tx = db.transaction('messages', 'readwrite');
  for (const m of messages) {
    if (!m.id.startsWith('tmp:')) await tx.store.delete(`tmp:${m.tempMessageId}`);
    await tx.store.put(m);
  }
  await tx.done;
}

export async function messageByTemp(db: Db, tempMessageId: string): Promise<CachedMessage | undefined> {
  const all = await db.getAllFromIndex('messages', 'byTemp', tempMessageId);
  return all.find((m) => !m.id.startsWith('tmp:')) ?? all[0];
}

export async function updateMessages(
  db: Db,
  chatId: string,
  pred: (m: CachedMessage) => boolean,
  change: (m: CachedMessage) => CachedMessage,
): Promise<void> {
  const tx = db.transaction('messages', 'readwrite');
  const range = IDBKeyRange.bound([chatId, 1, ''], [chatId, Infinity, '']);
  let cursor = await tx.store.index('byChat').openCursor(range);
  while (cursor) {
    if (pred(cursor.value)) await cursor.update(change(cursor.value));
    cursor = await cursor.continue();
  }
  await tx.done;
}
