// Byte helpers shared by the crypto and the wire code: strict base64url (docs/crypto.md §1),
// UUIDs as 16 bytes, concatenation and comparison. Every buffer is a plain ArrayBuffer-backed
// Uint8Array, which is what WebCrypto accepts.

export type Bytes = Uint8Array<ArrayBuffer>;

/** A copy of any byte view, backed by its own ArrayBuffer. */
export const own = (b: Uint8Array): Bytes => {
  const out = new Uint8Array(b.length);
  out.set(b);
  return out;
};

export const utf8 = (s: string): Bytes => own(new TextEncoder().encode(s));

export function cat(...parts: Uint8Array[]): Bytes {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) {
    out.set(p, i);
    i += p.length;
  }
  return out;
}

export const equal = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** Unsigned bytewise comparison: negative, zero or positive. */
export function compare(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

export function b64encode(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) {
    s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  }
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Strict base64url without padding, or null: decode, encode again, compare (docs/crypto.md §1). */
export function b64decode(s: string): Bytes | null {
  if (!/^[A-Za-z0-9_-]*$/.test(s) || s.length % 4 === 1) return null;
  let bin: string;
  try {
    bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  } catch {
    return null;
  }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return b64encode(out) === s ? out : null;
}

const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

/** A UUID's 16 bytes in RFC 9562 order; null when the string is not a UUID. */
export function uuidBytes(id: string): Bytes | null {
  if (!UUID.test(id)) return null;
  const hex = id.replace(/-/g, '');
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export const randomBytes = (n: number): Bytes => crypto.getRandomValues(new Uint8Array(n));
