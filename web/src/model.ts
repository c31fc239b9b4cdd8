// The app's state and the pure functions that change it. The zustand store (store.ts) holds one
// `AppState`; the engine (engine.ts) turns server events into calls of these functions.

import type { CachedMessage, MessageState } from './lib/db';
import type { Me, PublicUser } from './lib/types';

export type Presence = 'online' | 'away' | 'offline';
export type Connection = 'connecting' | 'online' | 'offline';

export interface ChatSummary {
  id: string;
  other: PublicUser;
  unread: number;
  lastSequence: number;
  /** Last activity (RFC 3339), for the order of the list. */
  updatedAt: string;
  last?: CachedMessage;
}

export interface ChatView {
  messages: CachedMessage[];
  /** More history exists before the first loaded message. */
  hasMore: boolean;
  loadingOlder: boolean;
}

export type Phase = 'boot' | 'signedOut' | 'ready' | 'expired';

export interface AppState {
  phase: Phase;
  me: Me | null;
  connection: Connection;
  /** The last failure to reach the server, shown with a retry button; null when fine. */
  unreachable: string | null;
  chats: Record<string, ChatSummary>;
  views: Record<string, ChatView>;
  activeChatId: string | null;
  presence: Record<string, Presence>;
  /** chatId → typing peer. */
  typing: Record<string, boolean>;
  /** userId → the peer's keys changed since the user last checked the safety number. */
  keyChanged: Record<string, boolean>;
  notice: string | null;
}

export const initialState: AppState = {
  phase: 'boot',
  me: null,
  connection: 'connecting',
  unreachable: null,
  chats: {},
  views: {},
  activeChatId: null,
  presence: {},
  typing: {},
  keyChanged: {},
  notice: null,
};

const RANK: Record<MessageState, number> = { failed: 0, sending: 1, sent: 2, delivered: 3, read: 4 };

/** Delivery marks only move forward (a late `delivered` never undoes `read`). */
export const advance = (from: MessageState, to: MessageState): MessageState => (RANK[to] > RANK[from] ? to : from);

/** Sent messages by sequence number, then pending ones by the time they were typed. */
export function compareMessages(a: CachedMessage, b: CachedMessage): number {
  if (a.seq && b.seq) return a.seq - b.seq;
  if (a.seq) return -1;
  if (b.seq) return 1;
  return a.clientTimestamp.localeCompare(b.clientTimestamp);
}

/**
 * Merges messages into a sorted list: one entry per tempMessageId (the stored copy replaces the
 * pending one, a repeat of a stored message changes nothing but its marks), sorted.
 */
export function mergeMessages(list: CachedMessage[], incoming: CachedMessage[]): CachedMessage[] {
  const byTemp = new Map<string, CachedMessage>();
  for (const m of [...list, ...incoming]) {
    const key = `${m.sender}/${m.tempMessageId}`;
    const prev = byTemp.get(key);
    if (!prev) {
      byTemp.set(key, m);
    } else if (prev.seq && m.seq) {
      byTemp.set(key, { ...prev, status: advance(prev.status, m.status) });
    } else if (m.seq || !prev.seq) {
      byTemp.set(key, m);
    }
  }
  return [...byTemp.values()].sort(compareMessages);
}

/** Chats by last activity, most recent first. */
export const sortChats = (chats: Record<string, ChatSummary>): ChatSummary[] =>
  Object.values(chats).sort((a, b) => b.updatedAt.localeCompare(a.updatedAt) || a.id.localeCompare(b.id));

/** Marks the caller's messages of a chat up to `upTo` with `status`. */
export function markMine(list: CachedMessage[], me: string, upTo: number, status: MessageState): CachedMessage[] {
  return list.map((m) => (m.sender === me && m.seq > 0 && m.seq <= upTo ? { ...m, status: advance(m.status, status) } : m));
}

export function markOne(list: CachedMessage[], messageId: string, status: MessageState): CachedMessage[] {
  return list.map((m) => (m.id === messageId ? { ...m, status: advance(m.status, status) } : m));
}

/** The state after messages arrive in a chat: the view, the summary's preview, order and unread count. */
export function withMessages(s: AppState, chatId: string, incoming: CachedMessage[], countUnread: boolean): AppState {
  if (!incoming.length) return s;
  const view = s.views[chatId];
  const views = view ? { ...s.views, [chatId]: { ...view, messages: mergeMessages(view.messages, incoming) } } : s.views;
  const chat = s.chats[chatId];
  if (!chat) return { ...s, views };
  const known = new Set((view?.messages ?? []).filter((m) => m.seq).map((m) => m.id));
  const fresh = incoming.filter(
    (m) => m.seq > chat.lastSequence || (m.seq === 0 && !known.has(m.id)),
  );
  const newest = mergeMessages(chat.last ? [chat.last] : [], incoming).at(-1);
  const unreadAdd =
    countUnread && s.activeChatId !== chatId
      ? fresh.filter((m) => m.seq > chat.lastSequence && m.sender !== s.me?.id).length
      : 0;
  const lastSequence = Math.max(chat.lastSequence, ...incoming.map((m) => m.seq));
  const updatedAt = [chat.updatedAt, ...fresh.map((m) => m.createdAt)].sort().at(-1) ?? chat.updatedAt;
  return {
    ...s,
    views,
    chats: {
      ...s.chats,
      [chatId]: { ...chat, last: newest, lastSequence, updatedAt, unread: chat.unread + unreadAdd },
    },
  };
}

/** The state after a status change of the caller's messages (delivered or read up to a sequence). */
export function withMarks(s: AppState, chatId: string, change: (l: CachedMessage[]) => CachedMessage[]): AppState {
  const view = s.views[chatId];
  const chat = s.chats[chatId];
  return {
    ...s,
    views: view ? { ...s.views, [chatId]: { ...view, messages: change(view.messages) } } : s.views,
    chats: chat?.last ? { ...s.chats, [chatId]: { ...chat, last: change([chat.last])[0] } } : s.chats,
  };
}

export const initials = (u: Pick<PublicUser, 'username' | 'displayName'>): string =>
  (u.displayName || u.username).slice(0, 2).toUpperCase();

export const displayName = (u: Pick<PublicUser, 'username' | 'displayName'>): string => u.displayName || u.username;
