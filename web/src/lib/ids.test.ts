import { describe, expect, it } from 'vitest';
import { uuidv7 } from './ids';

const FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('uuidv7', () => {
  it('is a version-7, RFC 9562 variant UUID carrying the time in milliseconds', () => {
    const at = Date.UTC(2026, 11, 4, 10, 0, 0, 123);
    const id = uuidv7(at + 10_000);
    expect(id).toMatch(FORMAT);
    const ms = parseInt(id.replace(/-/g, '').slice(0, 12), 16);
    expect(ms).toBe(at + 10_000);
  });

  it('orders ids as they were made, within one millisecond too, and never repeats', () => {
    const at = Date.now() + 60_000;
    const ids = [
      ...Array.from({ length: 5000 }, () => uuidv7(at)),
      ...Array.from({ length: 10 }, () => uuidv7(at + 1)),
      // A clock that steps back does not make an id smaller.
      ...Array.from({ length: 10 }, () => uuidv7(at - 5)),
    ];
    for (const id of ids) expect(id).toMatch(FORMAT);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
  });
});
