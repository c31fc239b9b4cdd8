// docs/crypto.md in TypeScript: keys (§3), the message envelope (§4, §5), the key bundle (§6) and
// safety numbers (§7). AES-256-GCM, HKDF-SHA256, SHA-512, X25519 and Ed25519 signing run on
// WebCrypto, with private keys imported as non-extractable CryptoKeys; strict Ed25519
// verification and public-key validation use @noble/curves. Nothing is hand-rolled. The error
// codes are docs/crypto.md §8's, checked in the same order as the Rust crate, so the shared
// vectors give the same results.

import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import {
  type Bytes,
  b64decode,
  b64encode,
  cat,
  compare,
  equal,
  own,
  randomBytes,
  utf8,
  uuidBytes,
} from './bytes';

export type CryptoCode =
  | 'INVALID_INPUT'
  | 'INVALID_KEY_FORMAT'
  | 'MISSING_FIELDS'
  | 'BAD_SIGNATURE'
  | 'DECRYPTION_FAILED'
  | 'UNSUPPORTED_VERSION'
  | 'KEY_MISMATCH';

export class CryptoError extends Error {
  constructor(
    readonly code: CryptoCode,
    message: string = code,
  ) {
    super(message);
    this.name = 'CryptoError';
  }
}

const fail = (code: CryptoCode, message?: string): never => {
  throw new CryptoError(code, message);
};

const subtle = (): SubtleCrypto => globalThis.crypto.subtle;

const LABEL_MESSAGE_KEY = utf8('jibber/v1/message-key');
const LABEL_SIGNATURE = utf8('jibber/v1/message-signature');
const LABEL_BUNDLE = utf8('jibber/v1/key-bundle');
const VERSION = 1;

/** A user's public keys of one generation. */
export interface PublicKeys {
  idKey: Bytes;
  signingKey: Bytes;
}

/** One generation of a user's keys. The private halves are non-extractable CryptoKeys. */
export interface Generation extends PublicKeys {
  idPrivate: CryptoKey;
  signingPrivate: CryptoKey;
}

/** Every generation a user has had, oldest first; the last is the current one. */
export interface KeyRing {
  generations: Generation[];
}

/** The raw private keys of one generation: only ever inside a key bundle or on their way into one. */
export interface Secrets {
  idSecret: Bytes;
  signingSecret: Bytes;
}

export const current = (ring: KeyRing): Generation => {
  const g = ring.generations[ring.generations.length - 1];
  if (!g) return fail('INVALID_INPUT', 'empty key ring');
  return g;
};

// ---------------------------------------------------------------- keys (§3)

export function parseIdKey(bytes: Uint8Array): Bytes {
  if (bytes.length !== 32) fail('INVALID_KEY_FORMAT', 'identity key is not 32 bytes');
  return own(bytes);
}

/** A canonical Ed25519 point of large order, or INVALID_KEY_FORMAT. */
export function parseSigningKey(bytes: Uint8Array): Bytes {
  if (bytes.length !== 32 || !isStrictPoint(bytes)) {
    fail('INVALID_KEY_FORMAT', 'signing key is not a canonical point of large order');
  }
  return own(bytes);
}

function isStrictPoint(bytes: Uint8Array): boolean {
  try {
    const p = ed25519.Point.fromBytes(bytes, false);
    return equal(p.toBytes(), bytes) && !p.isSmallOrder();
  } catch {
    return false;
  }
}

/** Fresh private keys for one generation, from the platform's CSPRNG. */
export const generateSecrets = (): Secrets => ({
  idSecret: randomBytes(32),
  signingSecret: randomBytes(32),
});

/** The public keys of raw private keys (§3). */
export function publicKeysOf(s: Secrets): PublicKeys {
  if (s.idSecret.length !== 32 || s.signingSecret.length !== 32) {
    fail('INVALID_KEY_FORMAT', 'a private key is not 32 bytes');
  }
  return {
    idKey: own(x25519.getPublicKey(s.idSecret)),
    signingKey: own(ed25519.getPublicKey(s.signingSecret)),
  };
}

/** Imports raw private keys as non-extractable CryptoKeys. The caller wipes the raw bytes. */
export async function importGeneration(s: Secrets): Promise<Generation> {
  const pub = publicKeysOf(s);
  const jwk = (crv: string, d: Uint8Array, x: Uint8Array): JsonWebKey => ({
    kty: 'OKP',
    crv,
    d: b64encode(d),
    x: b64encode(x),
  });
  const idPrivate = await subtle().importKey(
    'jwk',
    jwk('X25519', s.idSecret, pub.idKey),
    { name: 'X25519' },
    false,
    ['deriveBits'],
  );
  const signingPrivate = await subtle().importKey(
    'jwk',
    jwk('Ed25519', s.signingSecret, pub.signingKey),
    { name: 'Ed25519' },
    false,
    ['sign'],
  );
  return { ...pub, idPrivate, signingPrivate };
}

export const wipe = (...secrets: Secrets[]): void => {
  for (const s of secrets) {
    s.idSecret.fill(0);
    s.signingSecret.fill(0);
  }
};

// ---------------------------------------------------------------- envelope (§4)

/** What a message is about: the fields of the message object that the envelope binds. */
export interface MessageContext {
  chatId: string;
  sender: string;
  receiver: string;
  clientTimestamp: string;
  tempMessageId: string;
}

/** The six envelope fields as they travel (base64url). */
export interface WireEnvelope {
  cipher: string;
  iv: string;
  signature: string;
  senderPublicIdKey: string;
  senderPublicSigningKey: string;
  receiverPublicIdKey: string;
}

interface Envelope {
  cipher: Bytes;
  iv: Bytes;
  signature: Bytes;
  senderIdKey: Bytes;
  senderSigningKey: Bytes;
  receiverIdKey: Bytes;
}

const FIELDS = [
  'cipher',
  'iv',
  'signature',
  'senderPublicIdKey',
  'senderPublicSigningKey',
  'receiverPublicIdKey',
] as const;

function uuid(id: string): Bytes {
  return uuidBytes(id) ?? fail('INVALID_INPUT', 'not a UUID');
}

/** `clientTimestamp` as milliseconds since the epoch, rounded down (§1). */
export function timestampMs(rfc3339: string): number {
  const ms = Date.parse(rfc3339);
  if (Number.isNaN(ms)) fail('INVALID_INPUT', 'clientTimestamp is not RFC 3339');
  return Math.floor(ms);
}

/** The header encoding H (§4.2). */
export function headerBytes(
  ctx: MessageContext,
  senderIdKey: Uint8Array,
  senderSigningKey: Uint8Array,
  receiverIdKey: Uint8Array,
): Bytes {
  const temp = utf8(ctx.tempMessageId);
  const fixed = new Uint8Array(157);
  fixed[0] = VERSION;
  fixed.set(uuid(ctx.chatId), 1);
  fixed.set(uuid(ctx.sender), 17);
  fixed.set(uuid(ctx.receiver), 33);
  fixed.set(senderIdKey, 49);
  fixed.set(senderSigningKey, 81);
  fixed.set(receiverIdKey, 113);
  const view = new DataView(fixed.buffer);
  view.setBigInt64(145, BigInt(timestampMs(ctx.clientTimestamp)), false);
  view.setUint32(153, temp.length, false);
  return cat(fixed, temp);
}

async function hkdf(salt: Bytes, ikm: Bytes, info: Bytes): Promise<Bytes> {
  const key = await subtle().importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  return new Uint8Array(
    await subtle().deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info }, key, 256),
  );
}

/** X25519 with a non-extractable private key; an all-zero result is INVALID_KEY_FORMAT (§4.3). */
export async function sharedSecret(priv: CryptoKey, peer: Uint8Array): Promise<Bytes> {
  let bits: ArrayBuffer;
  try {
    const pub = await subtle().importKey('raw', own(peer), { name: 'X25519' }, false, []);
    bits = await subtle().deriveBits({ name: 'X25519', public: pub }, priv, 256);
  } catch {
    return fail('INVALID_KEY_FORMAT', 'identity key of small order');
  }
  const shared = new Uint8Array(bits);
  if (shared.every((b) => b === 0)) fail('INVALID_KEY_FORMAT', 'identity key of small order');
  return shared;
}

/** The HKDF info and the message key (§4.3). */
export async function messageKey(
  shared: Bytes,
  ctx: MessageContext,
  senderIdKey: Uint8Array,
  receiverIdKey: Uint8Array,
): Promise<{ info: Bytes; key: Bytes }> {
  const partyS = cat(uuid(ctx.sender), senderIdKey);
  const partyR = cat(uuid(ctx.receiver), receiverIdKey);
  const [lo, hi] = compare(partyS, partyR) <= 0 ? [partyS, partyR] : [partyR, partyS];
  const info = cat(LABEL_MESSAGE_KEY, lo, hi);
  return { info, key: await hkdf(uuid(ctx.chatId), shared, info) };
}

const signedBytes = (H: Bytes, iv: Bytes, cipher: Bytes): Bytes => cat(LABEL_SIGNATURE, H, iv, cipher);

async function aesKey(raw: Bytes, usage: KeyUsage): Promise<CryptoKey> {
  return subtle().importKey('raw', raw, 'AES-GCM', false, [usage]);
}

/**
 * Seals `plaintext` from `sender` (a generation of the caller's ring, normally the current one)
 * to `receiverIdKey` (§4.4). `iv` is for the test vectors only: leave it out.
 */
export async function seal(
  sender: Generation,
  ctx: MessageContext,
  receiverIdKey: Uint8Array,
  plaintext: Uint8Array,
  iv: Bytes = randomBytes(12),
): Promise<WireEnvelope> {
  if (ctx.tempMessageId === '') fail('MISSING_FIELDS', 'tempMessageId is empty');
  const rId = parseIdKey(receiverIdKey);
  const H = headerBytes(ctx, sender.idKey, sender.signingKey, rId);
  const shared = await sharedSecret(sender.idPrivate, rId);
  const { key } = await messageKey(shared, ctx, sender.idKey, rId);
  const ct = await subtle().encrypt(
    { name: 'AES-GCM', iv, additionalData: H, tagLength: 128 },
    await aesKey(key, 'encrypt'),
    own(plaintext),
  );
  const cipher = cat(new Uint8Array([VERSION]), new Uint8Array(ct));
  const signature = new Uint8Array(
    await subtle().sign({ name: 'Ed25519' }, sender.signingPrivate, signedBytes(H, iv, cipher)),
  );
  return {
    cipher: b64encode(cipher),
    iv: b64encode(iv),
    signature: b64encode(signature),
    senderPublicIdKey: b64encode(sender.idKey),
    senderPublicSigningKey: b64encode(sender.signingKey),
    receiverPublicIdKey: b64encode(rId),
  };
}

// ---------------------------------------------------------------- opening (§5)

/** §5.1: the six fields of a message object, present and strict base64url. */
function parseEnvelope(message: unknown): Envelope {
  if (typeof message !== 'object' || message === null || Array.isArray(message)) {
    return fail('INVALID_INPUT', 'the message is not an object');
  }
  const m = message as Record<string, unknown>;
  for (const f of FIELDS) {
    if (m[f] === undefined || m[f] === null || m[f] === '') fail('MISSING_FIELDS', `${f} is missing`);
  }
  const d = FIELDS.map((f) => {
    const v = m[f];
    return (typeof v === 'string' ? b64decode(v) : null) ?? fail('INVALID_INPUT', `${f} is not base64url`);
  }) as [Bytes, Bytes, Bytes, Bytes, Bytes, Bytes];
  return {
    cipher: d[0],
    iv: d[1],
    signature: d[2],
    senderIdKey: d[3],
    senderSigningKey: d[4],
    receiverIdKey: d[5],
  };
}

/** §5.2 steps 1 to 4. */
function checkShape(e: Envelope, ctx: MessageContext): void {
  const empty = [e.cipher, e.iv, e.signature, e.senderIdKey, e.senderSigningKey, e.receiverIdKey];
  if (empty.some((b) => b.length === 0) || ctx.tempMessageId === '') {
    fail('MISSING_FIELDS', 'a field is empty');
  }
  if (e.cipher[0] !== VERSION) fail('UNSUPPORTED_VERSION', 'unknown envelope version');
  if (e.iv.length !== 12) fail('INVALID_INPUT', 'iv is not 12 bytes');
  if (e.cipher.length < 17) fail('INVALID_INPUT', 'cipher is too short');
  if (e.signature.length !== 64) fail('INVALID_INPUT', 'signature is not 64 bytes');
  parseIdKey(e.senderIdKey);
  parseSigningKey(e.senderSigningKey);
  parseIdKey(e.receiverIdKey);
}

/** Strict Ed25519 (§11): canonical S below the order, canonical R of large order. */
function verifyStrict(signature: Bytes, msg: Bytes, key: Bytes): boolean {
  if (!isStrictPoint(signature.subarray(0, 32))) return false;
  try {
    return ed25519.verify(signature, msg, key, { zip215: false });
  } catch {
    return false;
  }
}

/** §5.2 steps 6 to 8, with the generation of the caller's ring and the peer key to use. */
async function verifyAndDecrypt(
  e: Envelope,
  ctx: MessageContext,
  mine: Generation,
  peerIdKey: Bytes,
): Promise<Bytes> {
  const H = headerBytes(ctx, e.senderIdKey, e.senderSigningKey, e.receiverIdKey);
  if (!verifyStrict(e.signature, signedBytes(H, e.iv, e.cipher), e.senderSigningKey)) {
    fail('BAD_SIGNATURE', 'the signature does not verify');
  }
  const shared = await sharedSecret(mine.idPrivate, peerIdKey);
  const { key } = await messageKey(shared, ctx, e.senderIdKey, e.receiverIdKey);
  try {
    return new Uint8Array(
      await subtle().decrypt(
        { name: 'AES-GCM', iv: e.iv, additionalData: H, tagLength: 128 },
        await aesKey(key, 'decrypt'),
        e.cipher.subarray(1),
      ),
    );
  } catch {
    return fail('DECRYPTION_FAILED', 'AES-GCM refused the ciphertext');
  }
}

const newest = (ring: KeyRing, pred: (g: Generation) => boolean): Generation | undefined =>
  ring.generations.findLast(pred);

/** Opens a message someone sent to the caller (`open`, §5.2). */
export async function open(
  ring: KeyRing,
  expectedSenderKeys: PublicKeys[],
  ctx: MessageContext,
  message: unknown,
): Promise<Bytes> {
  const e = parseEnvelope(message);
  checkShape(e, ctx);
  const trusted = expectedSenderKeys.some(
    (k) => equal(k.idKey, e.senderIdKey) && equal(k.signingKey, e.senderSigningKey),
  );
  if (!trusted) fail('KEY_MISMATCH', "the sender's keys are not the ones the directory lists");
  const mine =
    newest(ring, (g) => equal(g.idKey, e.receiverIdKey)) ??
    fail('KEY_MISMATCH', 'the message is not sealed to a key of this ring');
  return verifyAndDecrypt(e, ctx, mine, e.senderIdKey);
}

/** Opens a message the caller sent, e.g. from another device (`open_sent`, §5.2). */
export async function openSent(
  ring: KeyRing,
  expectedReceiverIdKeys: Uint8Array[],
  ctx: MessageContext,
  message: unknown,
): Promise<Bytes> {
  const e = parseEnvelope(message);
  checkShape(e, ctx);
  const mine =
    newest(ring, (g) => equal(g.idKey, e.senderIdKey) && equal(g.signingKey, e.senderSigningKey)) ??
    fail('KEY_MISMATCH', 'the sender keys are not this ring');
  if (!expectedReceiverIdKeys.some((k) => equal(k, e.receiverIdKey))) {
    fail('KEY_MISMATCH', "the receiver key is not the one the directory lists");
  }
  return verifyAndDecrypt(e, ctx, mine, e.receiverIdKey);
}

// ---------------------------------------------------------------- key bundle (§6)

export async function bundleKey(exportKey: Uint8Array): Promise<Bytes> {
  if (exportKey.length !== 64) fail('INVALID_KEY_FORMAT', 'exportKey is not 64 bytes');
  return hkdf(new Uint8Array(0), own(exportKey), LABEL_BUNDLE);
}

/** Seals every generation's private keys under the OPAQUE exportKey (§6). */
export async function sealBundle(
  exportKey: Uint8Array,
  generations: Secrets[],
  iv: Bytes = randomBytes(12),
): Promise<Bytes> {
  if (generations.length < 1 || generations.length > 255) fail('INVALID_INPUT', 'ring size');
  const key = await aesKey(await bundleKey(exportKey), 'encrypt');
  const plaintext = cat(
    new Uint8Array([generations.length]),
    ...generations.flatMap((g) => [g.idSecret, g.signingSecret]),
  );
  const ct = await subtle().encrypt(
    { name: 'AES-GCM', iv, additionalData: new Uint8Array([VERSION]), tagLength: 128 },
    key,
    plaintext,
  );
  plaintext.fill(0);
  return cat(new Uint8Array([VERSION]), iv, new Uint8Array(ct));
}

/** Opens a sealed bundle into raw private keys (§6); the caller imports then wipes them. */
export async function openBundle(exportKey: Uint8Array, sealed: Uint8Array): Promise<Secrets[]> {
  const raw = await bundleKey(exportKey);
  if (sealed.length === 0) fail('MISSING_FIELDS', 'the key bundle is empty');
  if (sealed[0] !== VERSION) fail('UNSUPPORTED_VERSION', 'unknown bundle version');
  if (sealed.length < 29) fail('INVALID_INPUT', 'the key bundle is too short');
  let plain: Bytes;
  try {
    plain = new Uint8Array(
      await subtle().decrypt(
        {
          name: 'AES-GCM',
          iv: own(sealed.subarray(1, 13)),
          additionalData: new Uint8Array([VERSION]),
          tagLength: 128,
        },
        await aesKey(raw, 'decrypt'),
        own(sealed.subarray(13)),
      ),
    );
  } catch {
    return fail('DECRYPTION_FAILED', 'the key bundle does not open with this password');
  }
  const count = plain[0] ?? 0;
  if (count < 1 || plain.length !== 1 + 64 * count) {
    plain.fill(0);
    fail('INVALID_INPUT', 'the key bundle does not parse');
  }
  const out: Secrets[] = [];
  for (let i = 0; i < count; i++) {
    const at = 1 + 64 * i;
    out.push({ idSecret: own(plain.subarray(at, at + 32)), signingSecret: own(plain.subarray(at + 32, at + 64)) });
  }
  plain.fill(0);
  return out;
}

/** Opens the bundle and imports every generation as non-extractable keys; raw bytes are wiped. */
export async function openKeyRing(exportKey: Uint8Array, sealed: Uint8Array): Promise<KeyRing> {
  const secrets = await openBundle(exportKey, sealed);
  try {
    return { generations: await Promise.all(secrets.map(importGeneration)) };
  } finally {
    wipe(...secrets);
  }
}

// ---------------------------------------------------------------- safety numbers (§7)

/** A user's 30-digit fingerprint (§7.1). */
export async function fingerprint(userId: string, keys: PublicKeys): Promise<string> {
  const tail = cat(keys.idKey, keys.signingKey);
  let h = new Uint8Array(await subtle().digest('SHA-512', cat(new Uint8Array([0, 1]), tail, uuid(userId))));
  for (let i = 0; i < 5200; i++) {
    h = new Uint8Array(await subtle().digest('SHA-512', cat(h, tail)));
  }
  let digits = '';
  for (let i = 0; i < 6; i++) {
    const [b0, b1, b2, b3, b4] = h.subarray(5 * i, 5 * i + 5) as unknown as number[];
    const chunk =
      (b0 as number) * 2 ** 32 + ((((b1 as number) << 24) | ((b2 as number) << 16) | ((b3 as number) << 8) | (b4 as number)) >>> 0);
    digits += String(chunk % 100000).padStart(5, '0');
  }
  return digits;
}

/** The 60-digit safety number of two users (§7.1). */
export async function safetyNumber(
  a: { userId: string; keys: PublicKeys },
  b: { userId: string; keys: PublicKeys },
): Promise<string> {
  const [fa, fb] = await Promise.all([fingerprint(a.userId, a.keys), fingerprint(b.userId, b.keys)]);
  return fa <= fb ? fa + fb : fb + fa;
}

export const displaySafetyNumber = (digits: string): string => (digits.match(/.{1,5}/g) ?? []).join(' ');

export const safetyNumberMatches = (digits: string, typed: string): boolean =>
  typed.replace(/[ \t\n\r\f]/g, '') === digits;

export type KeyCheck =
  | { result: 'firstSeen' }
  | { result: 'unchanged' }
  | { result: 'changed'; idKeyChanged: boolean; signingKeyChanged: boolean };

/** Trust on first use (§7.2). */
export function checkKeys(stored: PublicKeys | null, fetched: PublicKeys): KeyCheck {
  if (!stored) return { result: 'firstSeen' };
  const idKeyChanged = !equal(stored.idKey, fetched.idKey);
  const signingKeyChanged = !equal(stored.signingKey, fetched.signingKey);
  return idKeyChanged || signingKeyChanged
    ? { result: 'changed', idKeyChanged, signingKeyChanged }
    : { result: 'unchanged' };
}

/** Decodes a public key pair from the wire, validating both (§3). */
export function publicKeysFromWire(idKey: string, signingKey: string): PublicKeys {
  const id = b64decode(idKey) ?? fail('INVALID_INPUT', 'publicIdKey is not base64url');
  const sg = b64decode(signingKey) ?? fail('INVALID_INPUT', 'publicSigningKey is not base64url');
  return { idKey: parseIdKey(id), signingKey: parseSigningKey(sg) };
}
