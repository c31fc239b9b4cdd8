// The store's pure functions: merging, ordering, marks and unread counts.
import { describe, expect, it } from 'vitest';
import type { CachedMessage } from './lib/db';
import { type AppState, advance, initialState, markMine, mergeMessages, sortChats, withMarks, withMessages } from './model';

const ME = 'me';
const PEER = 'peer';
const msg = (over: Partial<CachedMessage>): CachedMessage => ({
  id: `id-${over.seq ?? 0}-${over.tempMessageId ?? 't'}`,
  chatId: 'c1',
  seq: 0,
  sender: ME,
  receiver: PEER,
  tempMessageId: 't',
  clientTimestamp: '2026-01-01T00:00:00.000Z',
  createdAt: '2026-01-01T00:00:00.000Z',
  status: 'sent',
  text: 'x',
  ...over,
});

const state = (over: Partial<AppState> = {}): AppState => ({
  ...initialState,
  phase: 'ready',
  me: { id: ME, username: 'me', publicIdKey: '', publicSigningKey: '', createdAt: '' },
  chats: {
    c1: { id: 'c1', other: { id: PEER, username: 'peer', publicIdKey: '', publicSigningKey: '' }, unread: 0, lastSequence: 2, updatedAt: '2026-01-01T00:00:00.000Z' },
  },
  views: { c1: { messages: [], hasMore: false, loadingOlder: false } },
  ...over,
});

describe('mergeMessages', () => {
  it('sorts stored messages by sequence and keeps pending ones last, by the time typed', () => {
    const list = mergeMessages([], [
      msg({ seq: 0, tempMessageId: 'p2', clientTimestamp: '2026-01-01T00:00:02.000Z', status: 'sending' }),
      msg({ seq: 3, tempMessageId: 'a' }),
      msg({ seq: 0, tempMessageId: 'p1', clientTimestamp: '2026-01-01T00:00:01.000Z', status: 'sending' }),
      msg({ seq: 1, tempMessageId: 'b' }),
    ]);
    expect(list.map((m) => m.tempMessageId)).toEqual(['b', 'a', 'p1', 'p2']);
  });

  it('replaces the pending copy with the stored message, once', () => {
    const pending = msg({ id: 'tmp:x', seq: 0, tempMessageId: 'x', status: 'sending' });
    const stored = msg({ id: 'srv', seq: 4, tempMessageId: 'x', status: 'sent' });
    const list = mergeMessages([pending], [stored]);
    expect(list).toEqual([stored]);
    // A late pending copy (or a repeat) does not bring it back or duplicate it.
    expect(mergeMessages(list, [pending, stored])).toEqual([stored]);
  });

  it('never moves a mark backwards', () => {
    const read = msg({ seq: 1, status: 'read' });
    expect(mergeMessages([read], [{ ...read, status: 'delivered' }])[0]?.status).toBe('read');
    expect(advance('sent', 'delivered')).toBe('delivered');
    expect(advance('read', 'sent')).toBe('read');
  });
});

describe('withMessages', () => {
  it('counts unread messages from the peer when the chat is not open, and updates the preview', () => {
    const s = withMessages(state(), 'c1', [msg({ seq: 3, sender: PEER, receiver: ME, text: 'hi', createdAt: '2026-01-02T00:00:00.000Z' })], true);
    expect(s.chats.c1?.unread).toBe(1);
    expect(s.chats.c1?.last?.text).toBe('hi');
    expect(s.chats.c1?.lastSequence).toBe(3);
    expect(s.chats.c1?.updatedAt).toBe('2026-01-02T00:00:00.000Z');
    // The same message again (catch-up after the socket delivered it) counts nothing more.
    const again = withMessages(s, 'c1', [msg({ seq: 3, sender: PEER, receiver: ME, text: 'hi' })], true);
    expect(again.chats.c1?.unread).toBe(1);
  });

  it('does not count messages in the open chat, nor my own', () => {
    const open = withMessages(state({ activeChatId: 'c1' }), 'c1', [msg({ seq: 3, sender: PEER })], true);
    expect(open.chats.c1?.unread).toBe(0);
    const mine = withMessages(state(), 'c1', [msg({ seq: 3, sender: ME })], true);
    expect(mine.chats.c1?.unread).toBe(0);
  });

  it('shows the stored message as the preview once the pending one is confirmed', () => {
    const pending = msg({ id: 'tmp:x', seq: 0, tempMessageId: 'x', status: 'sending', text: 'new' });
    const s1 = withMessages(state(), 'c1', [pending], false);
    expect(s1.chats.c1?.last?.status).toBe('sending');
    const s2 = withMessages(s1, 'c1', [{ ...pending, id: 'srv', seq: 3, status: 'sent' }], false);
    expect(s2.chats.c1?.last).toMatchObject({ id: 'srv', status: 'sent' });
    expect(s2.views.c1?.messages.map((m) => m.id)).toEqual(['srv']);
  });
});

describe('marks and order', () => {
  it('marks my messages read up to a sequence, in the view and the preview', () => {
    const list = [msg({ seq: 1, tempMessageId: 'a' }), msg({ seq: 2, tempMessageId: 'b', sender: PEER }), msg({ seq: 3, tempMessageId: 'c' })];
    expect(markMine(list, ME, 2, 'read').map((m) => m.status)).toEqual(['read', 'sent', 'sent']);
    const s = withMarks(state({ views: { c1: { messages: list, hasMore: false, loadingOlder: false } } }), 'c1', (l) => markMine(l, ME, 3, 'read'));
    expect(s.views.c1?.messages.filter((m) => m.sender === ME).every((m) => m.status === 'read')).toBe(true);
  });

  it('lists chats most recent first', () => {
    const s = state();
    const other = { ...s.chats.c1!, id: 'c2', updatedAt: '2026-03-01T00:00:00.000Z' };
    expect(sortChats({ ...s.chats, c2: other }).map((c) => c.id)).toEqual(['c2', 'c1']);
  });
});
