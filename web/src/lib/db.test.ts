// The IndexedDB cache and outbox (on fake-indexeddb): history pages, pending messages, keys.
import 'fake-indexeddb/auto';
import { describe, expect, it } from 'vitest';
import { generateSecrets, importGeneration } from './crypto';
import { type CachedMessage, chatMessages, deleteAccount, getCursor, loadRing, messageByTemp, openAccount, putMessages, saveRing, setCursor, updateMessages } from './db';

const msg = (seq: number, over: Partial<CachedMessage> = {}): CachedMessage => ({
  id: seq ? `m${seq}` : `tmp:p${over.tempMessageId ?? ''}`,
  chatId: 'c1',
  seq,
  sender: 'me',
  receiver: 'peer',
  tempMessageId: `t${seq}`,
  clientTimestamp: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(),
  createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(),
  status: 'sent',
  text: `message ${seq}`,
  ...over,
});

describe('the device cache', () => {
  it('pages history backwards and keeps pending messages last', async () => {
    const db = await openAccount(`u-${crypto.randomUUID()}`);
    await putMessages(db, Array.from({ length: 120 }, (_, i) => msg(i + 1)));
    await putMessages(db, [msg(5, { chatId: 'c2', id: 'other' })]);
    await putMessages(db, [msg(0, { id: 'tmp:x', tempMessageId: 'x', status: 'sending' })]);
    const latest = await chatMessages(db, 'c1', 50);
    expect(latest.map((m) => m.seq)).toEqual([...Array.from({ length: 50 }, (_, i) => 71 + i), 0]);
    const older = await chatMessages(db, 'c1', 50, 71);
    expect(older.map((m) => m.seq)).toEqual(Array.from({ length: 50 }, (_, i) => 21 + i));
    const oldest = await chatMessages(db, 'c1', 50, 21);
    expect(oldest.map((m) => m.seq)).toEqual(Array.from({ length: 20 }, (_, i) => 1 + i));
    db.close();
  });

  it('replaces the pending copy when the server has the message', async () => {
    const db = await openAccount(`u-${crypto.randomUUID()}`);
    await putMessages(db, [msg(0, { id: 'tmp:x', tempMessageId: 'x', status: 'sending' })]);
    await putMessages(db, [msg(7, { tempMessageId: 'x' })]);
    expect((await chatMessages(db, 'c1', 10)).map((m) => m.id)).toEqual(['m7']);
    expect((await messageByTemp(db, 'x'))?.id).toBe('m7');
    await updateMessages(db, 'c1', (m) => m.seq <= 7, (m) => ({ ...m, status: 'read' }));
    expect((await messageByTemp(db, 'x'))?.status).toBe('read');
    db.close();
  });

  it('keeps the key ring as non-extractable keys and the cursor; logout deletes them', async () => {
    const id = `u-${crypto.randomUUID()}`;
    const db = await openAccount(id);
    const gen = await importGeneration(generateSecrets());
    await saveRing(db, { generations: [gen] });
    await setCursor(db, 42);
    db.close();
    const again = await openAccount(id);
    const ring = await loadRing(again);
    expect(ring?.generations[0]?.idKey).toEqual(gen.idKey);
    expect(ring?.generations[0]?.idPrivate.extractable).toBe(false);
    expect(await getCursor(again)).toBe(42);
    again.close();
    await deleteAccount(id);
    const fresh = await openAccount(id);
    expect(await loadRing(fresh)).toBeNull();
    expect(await getCursor(fresh)).toBe(0);
    fresh.close();
  });
});
