//! The message envelope: [`seal`] a message for one receiver, [`open`] it (verify, then
//! decrypt), and [`open_sent`] for a message the caller sent from another device.
//!
//! The layout, labels and the order of the checks are specified in docs/crypto.md, "Message
//! envelope"; this module is the reference implementation and `tests/vectors/envelope.json`
//! pins its outputs.

use jibber_proto::B64;
use jibber_proto::api::Message;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::keys::{KEY_LEN, KeyRing, PublicIdKey, PublicKeys, PublicSigningKey, UserKeys};
use crate::primitives::{IV_LEN, TAG_LEN, aes_gcm_open, aes_gcm_seal, decode_b64, hkdf_sha256};

/// The envelope version this crate writes and reads: the first byte of `cipher`.
pub const ENVELOPE_VERSION: u8 = 1;
/// Ed25519 signature length, bytes.
pub const SIGNATURE_LEN: usize = 64;
/// The shortest `cipher`: the version byte and a GCM tag (an empty plaintext).
pub const MIN_CIPHER_LEN: usize = 1 + TAG_LEN;
/// Domain-separation label at the start of the signed bytes.
pub const SIGNATURE_LABEL: &[u8] = b"jibber/v1/message-signature";
/// HKDF `info` prefix of the message key.
pub const MESSAGE_KEY_LABEL: &[u8] = b"jibber/v1/message-key";

/// The envelope fields of the message object, in the order their checks run.
pub const ENVELOPE_FIELDS: [&str; 6] = [
    "cipher",
    "iv",
    "signature",
    "senderPublicIdKey",
    "senderPublicSigningKey",
    "receiverPublicIdKey",
];

/// What a message says about itself outside the envelope; all of it is authenticated (it is
/// part of the associated data and of the signed bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContext {
    pub chat_id: Uuid,
    pub sender: Uuid,
    pub receiver: Uuid,
    /// `clientTimestamp` in whole milliseconds since the Unix epoch (see [`timestamp_ms`]).
    pub client_timestamp_ms: i64,
    /// `tempMessageId`: the client's idempotency key, non-empty.
    pub temp_message_id: String,
}

impl MessageContext {
    /// The context of a message object as the server delivers it.
    pub fn from_message(message: &Message) -> Self {
        MessageContext {
            chat_id: message.chat_id,
            sender: message.sender,
            receiver: message.receiver,
            client_timestamp_ms: timestamp_ms(message.client_timestamp),
            temp_message_id: message.temp_message_id.clone(),
        }
    }
}

/// Milliseconds since the Unix epoch, rounded down. Senders put a whole-millisecond time on the
/// wire (the server stores milliseconds), so both sides agree.
pub fn timestamp_ms(t: OffsetDateTime) -> i64 {
    let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
}

/// The six envelope fields of the message object (`sendMessage` and `receivedMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// The version byte followed by the AES-256-GCM ciphertext and tag.
    pub cipher: B64,
    /// The 12-byte AES-GCM nonce.
    pub iv: B64,
    /// Ed25519 over the label, the header encoding, `iv` and `cipher`.
    pub signature: B64,
    pub sender_public_id_key: B64,
    pub sender_public_signing_key: B64,
    pub receiver_public_id_key: B64,
}

impl Envelope {
    /// The envelope of a message object as the server delivers it.
    pub fn from_message(message: &Message) -> Self {
        Envelope {
            cipher: message.cipher.clone(),
            iv: message.iv.clone(),
            signature: message.signature.clone(),
            sender_public_id_key: message.sender_public_id_key.clone(),
            sender_public_signing_key: message.sender_public_signing_key.clone(),
            receiver_public_id_key: message.receiver_public_id_key.clone(),
        }
    }

    /// The envelope of a JSON message object, checked as docs/crypto.md says: not an object is
    /// `INVALID_INPUT`; then each of [`ENVELOPE_FIELDS`] absent, `null` or `""` is
    /// `MISSING_FIELDS`; then each that is not a string of strict base64url is `INVALID_INPUT`.
    /// Other members are ignored.
    pub fn from_json(value: &Value) -> Result<Self, CryptoError> {
        let object = value
            .as_object()
            .ok_or(CryptoError::InvalidInput("message is not a JSON object"))?;
        for name in ENVELOPE_FIELDS {
            match object.get(name) {
                None | Some(Value::Null) => return Err(CryptoError::MissingFields(name)),
                Some(Value::String(s)) if s.is_empty() => {
                    return Err(CryptoError::MissingFields(name));
                }
                Some(_) => {}
            }
        }
        let field = |name: &'static str| -> Result<B64, CryptoError> {
            match object.get(name) {
                Some(Value::String(s)) => decode_b64(name, s).map(B64),
                _ => Err(CryptoError::InvalidInput(name)),
            }
        };
        Ok(Envelope {
            cipher: field("cipher")?,
            iv: field("iv")?,
            signature: field("signature")?,
            sender_public_id_key: field("senderPublicIdKey")?,
            sender_public_signing_key: field("senderPublicSigningKey")?,
            receiver_public_id_key: field("receiverPublicIdKey")?,
        })
    }
}

/// Seals `plaintext` from the `sender` generation (normally `ring.current()`) to the receiver's
/// identity key, with a fresh random `iv`.
///
/// Refuses an empty `tempMessageId` (`MISSING_FIELDS`) and a receiver key of small order
/// (`INVALID_KEY_FORMAT`). Panics only if the operating system's random generator fails.
pub fn seal(
    sender: &UserKeys,
    receiver_id_key: &PublicIdKey,
    context: &MessageContext,
    plaintext: &[u8],
) -> Result<Envelope, CryptoError> {
    let mut iv = [0u8; IV_LEN];
    OsRng.fill_bytes(&mut iv);
    seal_with_iv(sender, receiver_id_key, context, plaintext, &iv)
}

/// [`seal`] with a chosen `iv`: for the test vectors only, since an `iv` used twice under one
/// key breaks AES-GCM.
pub(crate) fn seal_with_iv(
    sender: &UserKeys,
    receiver_id_key: &PublicIdKey,
    context: &MessageContext,
    plaintext: &[u8],
    iv: &[u8; IV_LEN],
) -> Result<Envelope, CryptoError> {
    if context.temp_message_id.is_empty() {
        return Err(CryptoError::MissingFields("tempMessageId"));
    }
    let public = sender.public_keys();
    let ad = header_encoding(
        ENVELOPE_VERSION,
        context,
        public.id_key.as_bytes(),
        public.signing_key.as_bytes(),
        receiver_id_key.as_bytes(),
    )?;
    let shared = sender.identity().diffie_hellman(receiver_id_key)?;
    let key = message_key(
        &shared,
        &context.chat_id,
        (&context.sender, public.id_key.as_bytes()),
        (&context.receiver, receiver_id_key.as_bytes()),
    );
    let mut cipher = Vec::with_capacity(MIN_CIPHER_LEN + plaintext.len());
    cipher.push(ENVELOPE_VERSION);
    cipher.extend(aes_gcm_seal(&key, iv, plaintext, &ad)?);
    let signature = sender.signing().sign(&signature_input(&ad, iv, &cipher));
    Ok(Envelope {
        cipher: B64(cipher),
        iv: B64(iv.to_vec()),
        signature: B64(signature.to_vec()),
        sender_public_id_key: B64(public.id_key.as_bytes().to_vec()),
        sender_public_signing_key: B64(public.signing_key.as_bytes().to_vec()),
        receiver_public_id_key: B64(receiver_id_key.as_bytes().to_vec()),
    })
}

/// Opens a message sent to the caller: checks the fields, checks that the sender's keys are
/// one of `expected_sender` (the keys the caller's directory lists for `context.sender`, with
/// any older ones it still trusts) and that `receiverPublicIdKey` is in `ring`, verifies the
/// signature, then decrypts with the ring's generation that the message names.
///
/// The checks run in the order of docs/crypto.md, "Opening", so every implementation reports
/// the same code for the same input.
pub fn open(
    ring: &KeyRing,
    expected_sender: &[PublicKeys],
    context: &MessageContext,
    envelope: &Envelope,
) -> Result<Vec<u8>, CryptoError> {
    let checked = Checked::new(context, envelope)?;
    if !expected_sender
        .iter()
        .any(|k| k.id_key == checked.sender_id && k.signing_key == checked.sender_signing)
    {
        return Err(CryptoError::KeyMismatch(
            "the sender's keys are not the ones the directory lists",
        ));
    }
    let mine = ring
        .find_identity(&checked.receiver_id)
        .ok_or(CryptoError::KeyMismatch(
            "receiverPublicIdKey is not in the key ring",
        ))?;
    checked.verify()?;
    let shared = mine.identity().diffie_hellman(&checked.sender_id)?;
    checked.decrypt(&shared, context)
}

/// Opens a message the caller sent (read back on another device): the ring must hold the
/// sender's identity and signing keys as one generation, and `receiverPublicIdKey` must be one
/// of `expected_receiver` (the receiver's identity keys from the caller's directory). The
/// shared secret is the same from either side, so the same message key results.
pub fn open_sent(
    ring: &KeyRing,
    expected_receiver: &[PublicIdKey],
    context: &MessageContext,
    envelope: &Envelope,
) -> Result<Vec<u8>, CryptoError> {
    let checked = Checked::new(context, envelope)?;
    let mine = ring
        .generations()
        .iter()
        .rev()
        .find(|g| {
            g.identity().public() == checked.sender_id
                && g.signing().public() == checked.sender_signing
        })
        .ok_or(CryptoError::KeyMismatch(
            "the sender's keys are not in the key ring",
        ))?;
    if !expected_receiver.contains(&checked.receiver_id) {
        return Err(CryptoError::KeyMismatch(
            "receiverPublicIdKey is not the one the directory lists",
        ));
    }
    checked.verify()?;
    let shared = mine.identity().diffie_hellman(&checked.receiver_id)?;
    checked.decrypt(&shared, context)
}

/// An envelope whose fields passed steps 1 to 4 of "Opening".
struct Checked<'a> {
    iv: [u8; IV_LEN],
    signature: [u8; SIGNATURE_LEN],
    sender_id: PublicIdKey,
    sender_signing: PublicSigningKey,
    receiver_id: PublicIdKey,
    cipher: &'a [u8],
    ad: Vec<u8>,
}

impl<'a> Checked<'a> {
    fn new(context: &MessageContext, envelope: &'a Envelope) -> Result<Self, CryptoError> {
        // 1. Missing fields.
        let fields = [
            &envelope.cipher,
            &envelope.iv,
            &envelope.signature,
            &envelope.sender_public_id_key,
            &envelope.sender_public_signing_key,
            &envelope.receiver_public_id_key,
        ];
        for (name, value) in ENVELOPE_FIELDS.into_iter().zip(fields) {
            if value.is_empty() {
                return Err(CryptoError::MissingFields(name));
            }
        }
        if context.temp_message_id.is_empty() {
            return Err(CryptoError::MissingFields("tempMessageId"));
        }
        // 2. Version.
        let cipher = envelope.cipher.as_bytes();
        let version = *cipher.first().ok_or(CryptoError::MissingFields("cipher"))?;
        if version != ENVELOPE_VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        // 3. Lengths.
        let iv = <[u8; IV_LEN]>::try_from(envelope.iv.as_bytes())
            .map_err(|_| CryptoError::InvalidInput("iv must be 12 bytes"))?;
        if cipher.len() < MIN_CIPHER_LEN {
            return Err(CryptoError::InvalidInput("cipher is too short"));
        }
        let signature = <[u8; SIGNATURE_LEN]>::try_from(envelope.signature.as_bytes())
            .map_err(|_| CryptoError::InvalidInput("signature must be 64 bytes"))?;
        // 4. Key formats.
        let sender_id = PublicIdKey::from_bytes(envelope.sender_public_id_key.as_bytes())?;
        let sender_signing =
            PublicSigningKey::from_bytes(envelope.sender_public_signing_key.as_bytes())?;
        let receiver_id = PublicIdKey::from_bytes(envelope.receiver_public_id_key.as_bytes())?;
        let ad = header_encoding(
            version,
            context,
            sender_id.as_bytes(),
            sender_signing.as_bytes(),
            receiver_id.as_bytes(),
        )?;
        Ok(Checked {
            iv,
            signature,
            sender_id,
            sender_signing,
            receiver_id,
            cipher,
            ad,
        })
    }

    fn verify(&self) -> Result<(), CryptoError> {
        self.sender_signing.verify(
            &signature_input(&self.ad, &self.iv, self.cipher),
            &self.signature,
        )
    }

    fn decrypt(
        &self,
        shared: &[u8; KEY_LEN],
        context: &MessageContext,
    ) -> Result<Vec<u8>, CryptoError> {
        let key = message_key(
            shared,
            &context.chat_id,
            (&context.sender, self.sender_id.as_bytes()),
            (&context.receiver, self.receiver_id.as_bytes()),
        );
        let sealed = self
            .cipher
            .get(1..)
            .ok_or(CryptoError::InvalidInput("cipher is too short"))?;
        aes_gcm_open(&key, &self.iv, sealed, &self.ad)
    }
}

/// The header encoding: the AES-GCM associated data and the middle of the signed bytes.
///
/// `version (1) || chatId (16) || sender (16) || receiver (16) || senderPublicIdKey (32) ||
/// senderPublicSigningKey (32) || receiverPublicIdKey (32) || clientTimestamp (i64 BE, 8) ||
/// len(tempMessageId) (u32 BE, 4) || tempMessageId (UTF-8)`.
pub(crate) fn header_encoding(
    version: u8,
    context: &MessageContext,
    sender_id_key: &[u8; KEY_LEN],
    sender_signing_key: &[u8; KEY_LEN],
    receiver_id_key: &[u8; KEY_LEN],
) -> Result<Vec<u8>, CryptoError> {
    let temp = context.temp_message_id.as_bytes();
    let temp_len = u32::try_from(temp.len())
        .map_err(|_| CryptoError::InvalidInput("tempMessageId is too long"))?;
    let mut out = Vec::with_capacity(1 + 3 * 16 + 3 * KEY_LEN + 8 + 4 + temp.len());
    out.push(version);
    out.extend_from_slice(context.chat_id.as_bytes());
    out.extend_from_slice(context.sender.as_bytes());
    out.extend_from_slice(context.receiver.as_bytes());
    out.extend_from_slice(sender_id_key);
    out.extend_from_slice(sender_signing_key);
    out.extend_from_slice(receiver_id_key);
    out.extend_from_slice(&context.client_timestamp_ms.to_be_bytes());
    out.extend_from_slice(&temp_len.to_be_bytes());
    out.extend_from_slice(temp);
    Ok(out)
}

/// The signed bytes: `SIGNATURE_LABEL || header encoding || iv || cipher`.
pub(crate) fn signature_input(ad: &[u8], iv: &[u8], cipher: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SIGNATURE_LABEL.len() + ad.len() + iv.len() + cipher.len());
    out.extend_from_slice(SIGNATURE_LABEL);
    out.extend_from_slice(ad);
    out.extend_from_slice(iv);
    out.extend_from_slice(cipher);
    out
}

/// HKDF `info` of the message key: `MESSAGE_KEY_LABEL || lo || hi`, where each party is
/// `userId (16) || publicIdKey (32)` and `lo` is the bytewise smaller of the two.
pub(crate) fn message_key_info(a: (&Uuid, &[u8; KEY_LEN]), b: (&Uuid, &[u8; KEY_LEN])) -> Vec<u8> {
    let party = |(id, key): (&Uuid, &[u8; KEY_LEN])| [&id.as_bytes()[..], &key[..]].concat();
    let (pa, pb) = (party(a), party(b));
    let (lo, hi) = if pa <= pb { (pa, pb) } else { (pb, pa) };
    [MESSAGE_KEY_LABEL, &lo[..], &hi[..]].concat()
}

/// The AES-256 key of a chat between two identity keys: HKDF-SHA256 with the X25519 shared
/// secret as input, the chat id as salt and [`message_key_info`] as info.
pub(crate) fn message_key(
    shared: &[u8; KEY_LEN],
    chat_id: &Uuid,
    a: (&Uuid, &[u8; KEY_LEN]),
    b: (&Uuid, &[u8; KEY_LEN]),
) -> Zeroizing<[u8; 32]> {
    hkdf_sha256(chat_id.as_bytes(), shared, &message_key_info(a, b))
}
