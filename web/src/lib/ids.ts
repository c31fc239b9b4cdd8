/**
 * Time-ordered ids (UUID version 7, RFC 9562) for a message's `tempMessageId`.
 *
 * The server keeps a unique index on (sender, tempMessageId) to deduplicate retried sends. With
 * random ids (`crypto.randomUUID()`, version 4) every send lands on a random leaf of the
 * sender's part of that index, so on a large database each send rewrites a page nobody else
 * touches; ids that grow with time land at the end, where the sender's previous send was, as
 * the Rust SDK's do (`Uuid::now_v7`).
 *
 * Layout: 48 bits of Unix milliseconds, the version (7), a 12-bit counter that orders ids made
 * in the same millisecond (RFC 9562 "method 1", started at a random value each millisecond),
 * the variant, and 62 random bits.
 */

let lastMs = -1;
let counter = 0;

const hex = (bytes: Uint8Array): string =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/** A new version-7 UUID, greater than every one this page made before. */
export function uuidv7(now: number = Date.now()): string {
  const random = crypto.getRandomValues(new Uint8Array(10));
  const [r0 = 0, r1 = 0, r2 = 0] = random;
  let ms = Math.max(now, lastMs);
  if (ms === lastMs) {
    counter += 1;
    if (counter > 0xfff) {
      // 4,096 ids in one millisecond: borrow the next one.
      ms += 1;
      counter = r0 & 0x7ff;
    }
  } else {
    // Half the range at most, so that the millisecond has room to count up.
    counter = ((r0 << 8) | r1) & 0x7ff;
  }
  lastMs = ms;
  const bytes = new Uint8Array(16);
  // 48-bit big-endian milliseconds (beyond 32 bits: no bitwise operators).
  let t = ms;
  for (let i = 5; i >= 0; i--) {
    bytes[i] = t % 256;
    t = Math.floor(t / 256);
  }
  bytes[6] = 0x70 | (counter >> 8);
  bytes[7] = counter & 0xff;
  bytes.set(random.subarray(2), 8);
  bytes[8] = 0x80 | (r2 & 0x3f);
  const h = hex(bytes);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
