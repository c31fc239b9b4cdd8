// The web client's crypto against the Rust crate's shared vectors
// (crates/jibber-crypto/tests/vectors/*.json), plus round trips with fresh keys.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type Bytes, b64decode, b64encode } from './bytes';
import {
  CryptoError,
  type Generation,
  type KeyRing,
  checkKeys,
  displaySafetyNumber,
  fingerprint,
  generateSecrets,
  headerBytes,
  importGeneration,
  messageKey,
  open,
  openBundle,
  openKeyRing,
  openSent,
  parseIdKey,
  parseSigningKey,
  publicKeysOf,
  safetyNumber,
  safetyNumberMatches,
  seal,
  sealBundle,
  sharedSecret,
} from './crypto';

const vectors = (name: string) =>
  JSON.parse(
    readFileSync(new URL(`../../../crates/jibber-crypto/tests/vectors/${name}`, import.meta.url), 'utf8'),
  );

const d = (s: string): Bytes => {
  const b = b64decode(s);
  if (!b) throw new Error(`vector is not base64url: ${s}`);
  return b;
};

interface VGen {
  idPublic: string;
  idSecret: string;
  signingPublic: string;
  signingSecret: string;
}

const importV = (g: VGen): Promise<Generation> =>
  importGeneration({ idSecret: d(g.idSecret), signingSecret: d(g.signingSecret) });

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof p === 'function' ? p() : p);
    return undefined;
  } catch (e) {
    if (e instanceof CryptoError) return e.code;
    throw e;
  }
}

describe('keys.json', () => {
  const v = vectors('keys.json');
  it('derives every public key from its private keys', async () => {
    for (const g of v.generations as VGen[]) {
      const pub = publicKeysOf({ idSecret: d(g.idSecret), signingSecret: d(g.signingSecret) });
      expect(b64encode(pub.idKey)).toBe(g.idPublic);
      expect(b64encode(pub.signingKey)).toBe(g.signingPublic);
      const imported = await importV(g);
      expect(imported.idPrivate.extractable).toBe(false);
      expect(imported.signingPrivate.extractable).toBe(false);
    }
  });
  it('accepts and refuses keys as the Rust crate does', async () => {
    for (const c of v.checks as { kind: string; key: string; error?: string; name: string }[]) {
      const k = d(c.key);
      const other = new Uint8Array(32).fill(7);
      const run = {
        id: () => parseIdKey(k),
        signing: () => parseSigningKey(k),
        idSecret: () => importGeneration({ idSecret: k, signingSecret: other }),
        signingSecret: () => importGeneration({ idSecret: other, signingSecret: k }),
      }[c.kind];
      expect(run, c.kind).toBeDefined();
      expect(await codeOf(run as () => unknown), c.name).toBe(c.error);
    }
  });
});

describe('envelope.json', () => {
  const v = vectors('envelope.json');
  const users = v.users as Record<string, { userId: string; generations: VGen[] }>;
  const ring = async (name: string): Promise<KeyRing> => ({
    generations: await Promise.all((users[name]?.generations ?? []).map(importV)),
  });

  it('seals every vector byte for byte, with every intermediate', async () => {
    expect(v.seal.length).toBeGreaterThan(0);
    for (const c of v.seal) {
      const s = users[c.sender]!.generations[c.senderGeneration]!;
      const r = users[c.receiver]!.generations[c.receiverGeneration]!;
      const sender = await importV(s);
      const H = headerBytes(c.context, d(s.idPublic), d(s.signingPublic), d(r.idPublic));
      expect(b64encode(H), c.name).toBe(c.associatedData);
      const shared = await sharedSecret(sender.idPrivate, d(r.idPublic));
      expect(b64encode(shared), c.name).toBe(c.sharedSecret);
      const { info, key } = await messageKey(shared, c.context, d(s.idPublic), d(r.idPublic));
      expect(b64encode(info), c.name).toBe(c.hkdfInfo);
      expect(b64encode(key), c.name).toBe(c.messageKey);
      const wire = await seal(sender, c.context, d(r.idPublic), d(c.plaintext), d(c.iv));
      expect(wire, c.name).toEqual(c.message);
    }
  });

  it('opens or refuses every open vector with the same error code', async () => {
    expect(v.open.length).toBeGreaterThan(40);
    for (const c of v.open) {
      const opener = await ring(c.opener);
      const result =
        c.mode === 'received'
          ? open(
              opener,
              (c.expectedSenderKeys as { idKey: string; signingKey: string }[]).map((k) => ({
                idKey: d(k.idKey),
                signingKey: d(k.signingKey),
              })),
              c.context,
              c.message,
            )
          : openSent(opener, (c.expectedReceiverIdKeys as string[]).map(d), c.context, c.message);
      if (c.error) {
        expect(await codeOf(result), c.name).toBe(c.error);
      } else {
        expect(b64encode(await result), c.name).toBe(c.plaintext);
      }
    }
  });

  it('round-trips fresh keys both ways, and the sender reads its own message', async () => {
    const alice = { generations: [await importGeneration(generateSecrets())] };
    const bob = { generations: [await importGeneration(generateSecrets())] };
    const a = alice.generations[0]!;
    const b = bob.generations[0]!;
    const ctx = {
      chatId: '01936f0f-0000-7abc-9def-c4a700000004',
      sender: '01936f0e-1a2b-7c3d-8e4f-a11ce0000001',
      receiver: '01936f0e-1a2b-7c3d-8e4f-b0b000000002',
      clientTimestamp: new Date().toISOString(),
      tempMessageId: crypto.randomUUID(),
    };
    const text = new TextEncoder().encode('hello 👋');
    const wire = await seal(a, ctx, b.idKey, text);
    expect(await open(bob, [a], ctx, wire)).toEqual(new Uint8Array(text));
    expect(await openSent(alice, [b.idKey], ctx, wire)).toEqual(new Uint8Array(text));
    // Another chat id: the signature no longer covers it.
    expect(await codeOf(open(bob, [a], { ...ctx, chatId: ctx.receiver }, wire))).toBe('BAD_SIGNATURE');
    // Sealing without a tempMessageId is refused.
    expect(await codeOf(seal(a, { ...ctx, tempMessageId: '' }, b.idKey, text))).toBe('MISSING_FIELDS');
  });
});

describe('key_bundle.json', () => {
  const v = vectors('key_bundle.json');
  it('seals byte for byte', async () => {
    for (const c of v.seal) {
      const secrets = (c.generations as VGen[]).map((g) => ({
        idSecret: d(g.idSecret),
        signingSecret: d(g.signingSecret),
      }));
      expect(b64encode(await sealBundle(d(c.exportKey), secrets, d(c.iv))), c.name).toBe(c.sealed);
    }
  });
  it('opens or refuses with the same codes', async () => {
    for (const c of v.open) {
      const sealed = b64decode(c.sealed);
      const result = sealed
        ? openBundle(d(c.exportKey), sealed)
        : Promise.reject(new CryptoError('INVALID_INPUT'));
      if (c.error) {
        expect(await codeOf(result), c.name).toBe(c.error);
      } else {
        const got = (await result).map((s) => ({
          idSecret: b64encode(s.idSecret),
          signingSecret: b64encode(s.signingSecret),
        }));
        expect(got, c.name).toEqual(
          (c.generations as VGen[]).map((g) => ({ idSecret: g.idSecret, signingSecret: g.signingSecret })),
        );
        const ring = await openKeyRing(d(c.exportKey), sealed!);
        expect(ring.generations.map((g) => b64encode(g.idKey))).toEqual(
          (c.generations as VGen[]).map((g) => g.idPublic),
        );
      }
    }
  });
});

describe('safety_number.json', () => {
  const v = vectors('safety_number.json');
  type Side = { userId: string; idKey: string; signingKey: string; fingerprint: string };
  const side = (s: Side) => ({ userId: s.userId, keys: { idKey: d(s.idKey), signingKey: d(s.signingKey) } });
  it('computes fingerprints, numbers and their display', async () => {
    for (const c of v.cases as { a: Side; b: Side; safetyNumber: string; display: string; name: string }[]) {
      expect(await fingerprint(c.a.userId, side(c.a).keys), c.name).toBe(c.a.fingerprint);
      const n = await safetyNumber(side(c.a), side(c.b));
      expect(n, c.name).toBe(c.safetyNumber);
      expect(await safetyNumber(side(c.b), side(c.a))).toBe(n);
      expect(displaySafetyNumber(n)).toBe(c.display);
      expect(safetyNumberMatches(n, `${c.display}\n`)).toBe(true);
      expect(safetyNumberMatches(n, c.display.slice(1))).toBe(false);
    }
  });
  it('checks keys on first use', () => {
    type K = { idKey: string; signingKey: string };
    const keys = (k: K) => ({ idKey: d(k.idKey), signingKey: d(k.signingKey) });
    for (const c of v.keyChecks as { stored: K | null; fetched: K; expect: object; name: string }[]) {
      expect(checkKeys(c.stored && keys(c.stored), keys(c.fetched)), c.name).toEqual(c.expect);
    }
  });
});
