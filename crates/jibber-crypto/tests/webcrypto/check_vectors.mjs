// An independent implementation of docs/crypto.md with nothing but Node's WebCrypto (the
// platform of the web client), checked against the committed vectors: the header encoding, the
// X25519 shared secret, the HKDF inputs and output, AES-256-GCM, the signed bytes, Ed25519
// signatures (sealing and verifying), the key bundle and safety numbers. It shows the
// specification can be implemented from the page alone. Run by tests/crypto/webcrypto.rs, or:
//   node crates/jibber-crypto/tests/webcrypto/check_vectors.mjs
import fs from 'node:fs';

const dir = new URL('../vectors/', import.meta.url);
const load = (name) => JSON.parse(fs.readFileSync(new URL(name, dir)));
const subtle = globalThis.crypto.subtle;
const enc = new TextEncoder();

// Strict base64url without padding: decode, re-encode, compare (docs/crypto.md §1).
const b64d = (s) => {
  const b = Buffer.from(s, 'base64url');
  if (b.toString('base64url') !== s) throw new Error('INVALID_INPUT');
  return new Uint8Array(b);
};
const b64e = (b) => Buffer.from(b).toString('base64url');
const cat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) {
    out.set(p, i);
    i += p.length;
  }
  return out;
};
const uuid = (s) => Uint8Array.from(Buffer.from(s.replace(/-/g, ''), 'hex'));
const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const cmp = (a, b) => {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
};

let passed = 0;
const check = (cond, what) => {
  if (!cond) throw new Error(`FAILED: ${what}`);
  passed++;
};

// §4.2
function header(ctx, senderIdKey, senderSigningKey, receiverIdKey) {
  const temp = enc.encode(ctx.tempMessageId);
  const fixed = new Uint8Array(157);
  fixed[0] = 1;
  fixed.set(uuid(ctx.chatId), 1);
  fixed.set(uuid(ctx.sender), 17);
  fixed.set(uuid(ctx.receiver), 33);
  fixed.set(senderIdKey, 49);
  fixed.set(senderSigningKey, 81);
  fixed.set(receiverIdKey, 113);
  const view = new DataView(fixed.buffer);
  view.setBigInt64(145, BigInt(Date.parse(ctx.clientTimestamp)), false);
  view.setUint32(153, temp.length, false);
  return cat(fixed, temp);
}

async function x25519(secret, myPublic, peer) {
  const priv = await subtle.importKey(
    'jwk',
    { kty: 'OKP', crv: 'X25519', d: b64e(secret), x: b64e(myPublic) },
    { name: 'X25519' },
    false,
    ['deriveBits'],
  );
  const pub = await subtle.importKey('raw', peer, { name: 'X25519' }, false, []);
  return new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: pub }, priv, 256));
}

async function hkdf(salt, ikm, info) {
  const key = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  return new Uint8Array(
    await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info }, key, 256),
  );
}

// §4.3
async function messageKey(ctx, myGen, peerIdKey, senderIdKey, receiverIdKey) {
  const shared = await x25519(b64d(myGen.idSecret), b64d(myGen.idPublic), peerIdKey);
  const partyS = cat(uuid(ctx.sender), senderIdKey);
  const partyR = cat(uuid(ctx.receiver), receiverIdKey);
  const [lo, hi] = cmp(partyS, partyR) <= 0 ? [partyS, partyR] : [partyR, partyS];
  const info = cat(enc.encode('jibber/v1/message-key'), lo, hi);
  return { shared, info, key: await hkdf(uuid(ctx.chatId), shared, info) };
}

const signedBytes = (H, iv, cipher) => cat(enc.encode('jibber/v1/message-signature'), H, iv, cipher);

const envelope = load('envelope.json');
for (const c of envelope.seal) {
  const s = envelope.users[c.sender].generations[c.senderGeneration];
  const r = envelope.users[c.receiver].generations[c.receiverGeneration];
  const H = header(c.context, b64d(s.idPublic), b64d(s.signingPublic), b64d(r.idPublic));
  check(eq(H, b64d(c.associatedData)), `${c.name}: associatedData`);
  const { shared, info, key } = await messageKey(
    c.context, s, b64d(r.idPublic), b64d(s.idPublic), b64d(r.idPublic));
  check(eq(shared, b64d(c.sharedSecret)), `${c.name}: sharedSecret`);
  check(eq(info, b64d(c.hkdfInfo)), `${c.name}: hkdfInfo`);
  check(eq(key, b64d(c.messageKey)), `${c.name}: messageKey`);
  const aes = await subtle.importKey('raw', key, 'AES-GCM', false, ['encrypt']);
  const ct = await subtle.encrypt(
    { name: 'AES-GCM', iv: b64d(c.iv), additionalData: H, tagLength: 128 }, aes, b64d(c.plaintext));
  const cipher = cat(new Uint8Array([1]), new Uint8Array(ct));
  check(b64e(cipher) === c.message.cipher, `${c.name}: cipher`);
  const S = signedBytes(H, b64d(c.iv), cipher);
  check(eq(S, b64d(c.signatureInput)), `${c.name}: signatureInput`);
  const signing = await subtle.importKey(
    'jwk', { kty: 'OKP', crv: 'Ed25519', d: s.signingSecret, x: s.signingPublic },
    { name: 'Ed25519' }, false, ['sign']);
  const sig = new Uint8Array(await subtle.sign({ name: 'Ed25519' }, signing, S));
  check(b64e(sig) === c.message.signature, `${c.name}: signature`);
}

// The positive `received` open vectors: verify with WebCrypto, then decrypt.
for (const c of envelope.open.filter((o) => o.mode === 'received' && o.plaintext !== undefined)) {
  const m = c.message;
  const [sId, sSign, rId] = [m.senderPublicIdKey, m.senderPublicSigningKey, m.receiverPublicIdKey].map(b64d);
  const [iv, cipher] = [b64d(m.iv), b64d(m.cipher)];
  const H = header(c.context, sId, sSign, rId);
  const verifying = await subtle.importKey('raw', sSign, { name: 'Ed25519' }, false, ['verify']);
  check(
    await subtle.verify({ name: 'Ed25519' }, verifying, b64d(m.signature), signedBytes(H, iv, cipher)),
    `${c.name}: signature verifies`);
  const mine = envelope.users[c.opener].generations.findLast((g) => g.idPublic === m.receiverPublicIdKey);
  const { key } = await messageKey(c.context, mine, sId, sId, rId);
  const aes = await subtle.importKey('raw', key, 'AES-GCM', false, ['decrypt']);
  const pt = await subtle.decrypt({ name: 'AES-GCM', iv, additionalData: H, tagLength: 128 }, aes, cipher.slice(1));
  check(b64e(new Uint8Array(pt)) === c.plaintext, `${c.name}: plaintext`);
}

// §6
const bundle = load('key_bundle.json');
for (const c of bundle.seal) {
  const key = await hkdf(new Uint8Array(0), b64d(c.exportKey), enc.encode('jibber/v1/key-bundle'));
  check(eq(key, b64d(c.bundleKey)), `${c.name}: bundleKey`);
  const pt = cat(
    new Uint8Array([c.generations.length]),
    ...c.generations.flatMap((g) => [b64d(g.idSecret), b64d(g.signingSecret)]));
  check(eq(pt, b64d(c.plaintext)), `${c.name}: plaintext`);
  const aes = await subtle.importKey('raw', key, 'AES-GCM', false, ['encrypt']);
  const ct = await subtle.encrypt(
    { name: 'AES-GCM', iv: b64d(c.iv), additionalData: new Uint8Array([1]) }, aes, pt);
  check(b64e(cat(new Uint8Array([1]), b64d(c.iv), new Uint8Array(ct))) === c.sealed, `${c.name}: sealed`);
}

// §7
async function fingerprint(side) {
  const idKey = b64d(side.idKey);
  const signingKey = b64d(side.signingKey);
  let h = new Uint8Array(
    await subtle.digest('SHA-512', cat(new Uint8Array([0, 1]), idKey, signingKey, uuid(side.userId))));
  for (let i = 0; i < 5200; i++) {
    h = new Uint8Array(await subtle.digest('SHA-512', cat(h, idKey, signingKey)));
  }
  let digits = '';
  for (let i = 0; i < 6; i++) {
    const [b0, b1, b2, b3, b4] = h.slice(5 * i, 5 * i + 5);
    const chunk = b0 * 2 ** 32 + (((b1 << 24) | (b2 << 16) | (b3 << 8) | b4) >>> 0);
    digits += String(chunk % 100000).padStart(5, '0');
  }
  return digits;
}
const safety = load('safety_number.json');
for (const c of safety.cases) {
  const [fa, fb] = [await fingerprint(c.a), await fingerprint(c.b)];
  check(fa === c.a.fingerprint && fb === c.b.fingerprint, `${c.name}: fingerprints`);
  const number = fa <= fb ? fa + fb : fb + fa;
  check(number === c.safetyNumber, `${c.name}: safetyNumber`);
  check(number.match(/.{5}/g).join(' ') === c.display, `${c.name}: display`);
}

console.log(`webcrypto: ${passed} passed, 0 failed`);
