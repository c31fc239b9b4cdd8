//! The Jibber SDK (first part): the REST API with automatic access-token refresh, OPAQUE
//! sign-up and login that recover the user's key ring from the sealed key bundle, and
//! end-to-end encrypted messages (docs/crypto.md).
//!
//! Layout:
//! - [`ClientError`]: every failure, with the server's stable error code when it has one.
//! - [`register`] / [`login`]: OPAQUE against the server; login opens the key bundle.
//! - [`Session`]: an authenticated client; refreshes its access token before it expires and
//!   once more on a `TOKEN_EXPIRED` answer; sends and decrypts messages.
//!
//! The Socket.IO side, the on-disk outbox and the local cache come next (issue 4).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jibber_crypto::opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use jibber_crypto::{CryptoError, KeyRing, PublicIdKey, PublicKeys, Suite, bundle, envelope};
use jibber_proto::api::{
    Chat, Envelope as Wrapped, KeyBundleResponse, LoginFinishResponse, LoginStartResponse, Me,
    Message, PublicUser, RefreshResponse, RegisterStartResponse, SendMessageResponse, SyncResponse,
};
use jibber_proto::{B64, ErrorBody, ErrorCode, ErrorEnvelope};
use rand::rngs::OsRng;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

/// Refresh the access token when less than this is left.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// What can go wrong talking to a Jibber server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused, with its stable code.
    #[error("{}: {} (HTTP {})", .0.code, .0.message, .0.status_code)]
    Api(ErrorBody),
    /// The server could not be reached or the connection broke.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// The server answered something this client does not understand.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// Wrong password or unknown user (OPAQUE cannot tell them apart, by design).
    #[error("invalid username or password")]
    InvalidCredentials,
    /// A message or key bundle failed its cryptographic checks.
    #[error("{code}: {source}", code = .source.code())]
    Crypto {
        #[from]
        source: CryptoError,
    },
}

impl ClientError {
    /// The server's error code, if the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api(body) => Some(body.code),
            _ => None,
        }
    }
}

fn unreachable(e: reqwest::Error) -> ClientError {
    ClientError::Unreachable(e.to_string())
}

/// One HTTP exchange: the success envelope's `data`, or the error envelope as [`ClientError::Api`].
async fn call<T: DeserializeOwned>(
    http: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<T, ClientError> {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await.map_err(unreachable)?;
    let status = res.status();
    let bytes = res.bytes().await.map_err(unreachable)?;
    if status.is_success() {
        let envelope: Wrapped<T> = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("HTTP {status}: {e}")))?;
        return Ok(envelope.data);
    }
    match serde_json::from_slice::<ErrorEnvelope>(&bytes) {
        Ok(e) => Err(ClientError::Api(e.error)),
        Err(_) => Err(ClientError::Protocol(format!(
            "HTTP {status} without the error envelope"
        ))),
    }
}

fn api_url(base: &str, path: &str) -> String {
    format!("{}/api/v1{path}", base.trim_end_matches('/'))
}

/// Signs up: OPAQUE registration, a fresh key ring sealed under the OPAQUE export key.
/// `ksf` must be the same at every login ([`jibber_crypto::serenity_ksf`] for accounts the web
/// client can open).
pub async fn register(
    base: &str,
    username: &str,
    password: &str,
    ksf: &argon2::Argon2<'static>,
) -> Result<Me, ClientError> {
    let http = reqwest::Client::new();
    let start = ClientRegistration::<Suite>::start(&mut OsRng, password.as_bytes())
        .map_err(|e| ClientError::Protocol(format!("OPAQUE: {e:?}")))?;
    let body = json!({ "username": username, "registrationRequest": B64::encode(&start.message.serialize()) });
    let answer: RegisterStartResponse = call(
        &http,
        Method::POST,
        api_url(base, "/auth/register/start"),
        None,
        Some(&body),
    )
    .await?;
    let response = RegistrationResponse::deserialize(answer.registration_response.as_bytes())
        .map_err(|_| ClientError::Protocol("registrationResponse does not parse".to_owned()))?;
    let finish = start
        .state
        .finish(
            &mut OsRng,
            password.as_bytes(),
            response,
            ClientRegistrationFinishParameters::new(Identifiers::default(), Some(ksf)),
        )
        .map_err(|e| ClientError::Protocol(format!("OPAQUE: {e:?}")))?;
    let ring = KeyRing::generate();
    let public = ring.current().public_keys();
    let sealed = bundle::seal(&ring, &finish.export_key)?;
    let body = json!({
        "username": username,
        "registrationRecord": B64::encode(&finish.message.serialize()),
        "publicIdKey": B64::encode(public.id_key.as_bytes()),
        "publicSigningKey": B64::encode(public.signing_key.as_bytes()),
        "keyBundle": B64::encode(&sealed),
    });
    #[derive(serde::Deserialize)]
    struct Created {
        user: Me,
    }
    let created: Created = call(
        &http,
        Method::POST,
        api_url(base, "/auth/register/finish"),
        None,
        Some(&body),
    )
    .await?;
    Ok(created.user)
}

/// Logs in with OPAQUE and opens the key bundle with the export key.
pub async fn login(
    base: &str,
    username: &str,
    password: &str,
    ksf: &argon2::Argon2<'static>,
) -> Result<Session, ClientError> {
    let http = reqwest::Client::new();
    let start = ClientLogin::<Suite>::start(&mut OsRng, password.as_bytes())
        .map_err(|e| ClientError::Protocol(format!("OPAQUE: {e:?}")))?;
    let body = json!({ "username": username, "startLoginRequest": B64::encode(&start.message.serialize()) });
    let answer: LoginStartResponse = call(
        &http,
        Method::POST,
        api_url(base, "/auth/login/start"),
        None,
        Some(&body),
    )
    .await?;
    let response = CredentialResponse::deserialize(answer.login_response.as_bytes())
        .map_err(|_| ClientError::Protocol("loginResponse does not parse".to_owned()))?;
    let finish = start
        .state
        .finish(
            &mut OsRng,
            password.as_bytes(),
            response,
            ClientLoginFinishParameters::new(None, Identifiers::default(), Some(ksf)),
        )
        .map_err(|_| ClientError::InvalidCredentials)?;
    let body = json!({ "loginId": answer.login_id, "finishLoginRequest": B64::encode(&finish.message.serialize()) });
    let tokens: LoginFinishResponse = call(
        &http,
        Method::POST,
        api_url(base, "/auth/login/finish"),
        None,
        Some(&body),
    )
    .await?;
    let sealed: KeyBundleResponse = call(
        &http,
        Method::GET,
        api_url(base, "/users/me/key-bundle"),
        Some(&tokens.access_token),
        None,
    )
    .await?;
    let ring = bundle::open(sealed.key_bundle.as_bytes(), &finish.export_key)?;
    Ok(Session {
        http,
        base: base.trim_end_matches('/').to_owned(),
        user: tokens.user,
        ring,
        tokens: Mutex::new(Tokens {
            access: tokens.access_token,
            expires_at: Instant::now() + Duration::from_secs(tokens.expires_in),
            refresh: tokens.refresh_token,
        }),
        refreshing: tokio::sync::Mutex::new(()),
    })
}

struct Tokens {
    access: String,
    expires_at: Instant,
    refresh: String,
}

/// A signed-in user: tokens, key ring, and the calls of the REST API.
pub struct Session {
    http: reqwest::Client,
    base: String,
    user: Me,
    ring: KeyRing,
    tokens: Mutex<Tokens>,
    /// One refresh at a time: the server revokes a refresh token's family on reuse.
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user.id)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn user(&self) -> &Me {
        &self.user
    }

    pub fn key_ring(&self) -> &KeyRing {
        &self.ring
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, Tokens> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current refresh token (for a client that persists its session).
    pub fn refresh_token(&self) -> String {
        self.tokens().refresh.clone()
    }

    /// An access token with at least [`REFRESH_MARGIN`] left (refreshing first if needed).
    pub async fn access_token(&self) -> Result<String, ClientError> {
        {
            let t = self.tokens();
            if t.expires_at > Instant::now() + REFRESH_MARGIN {
                return Ok(t.access.clone());
            }
        }
        self.refresh().await
    }

    /// Spends the refresh token for a new pair; returns the new access token.
    pub async fn refresh(&self) -> Result<String, ClientError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let before = self.tokens().refresh.clone();
        let body = json!({ "refreshToken": before });
        let fresh: RefreshResponse = call(
            &self.http,
            Method::POST,
            api_url(&self.base, "/auth/refresh"),
            None,
            Some(&body),
        )
        .await?;
        let mut t = self.tokens();
        t.access = fresh.access_token.clone();
        t.refresh = fresh.refresh_token;
        t.expires_at = Instant::now() + Duration::from_secs(fresh.expires_in);
        Ok(fresh.access_token)
    }

    /// An authenticated call; refreshes once and retries on `TOKEN_EXPIRED`.
    pub async fn request<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let token = self.access_token().await?;
        let url = api_url(&self.base, path);
        match call(
            &self.http,
            method.clone(),
            url.clone(),
            Some(&token),
            body.as_ref(),
        )
        .await
        {
            Err(ClientError::Api(e)) if e.code == ErrorCode::TokenExpired => {
                let token = self.refresh().await?;
                call(&self.http, method, url, Some(&token), body.as_ref()).await
            }
            other => other,
        }
    }

    pub async fn me(&self) -> Result<Me, ClientError> {
        self.request::<_, ()>(Method::GET, "/users/me", None).await
    }

    /// Another user's public profile and keys.
    pub async fn user_profile(&self, id: Uuid) -> Result<PublicUser, ClientError> {
        self.request::<_, ()>(Method::GET, &format!("/users/{id}"), None)
            .await
    }

    /// The first page of other users, optionally filtered.
    pub async fn contacts(&self, search: &str) -> Result<Vec<PublicUser>, ClientError> {
        let q: String = search
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            .collect();
        self.request::<_, ()>(Method::GET, &format!("/contacts?search={q}"), None)
            .await
    }

    /// The chat with `user`, created if absent.
    pub async fn open_chat(&self, user: Uuid) -> Result<Chat, ClientError> {
        self.request(Method::POST, "/chats", Some(&json!({ "userId": user })))
            .await
    }

    /// The first page of chats, most recent first.
    pub async fn chats(&self) -> Result<Vec<Chat>, ClientError> {
        self.request::<_, ()>(Method::GET, "/chats", None).await
    }

    /// Messages of a chat after sequence `since`, chronological (one page).
    pub async fn messages_since(
        &self,
        chat: Uuid,
        since: i64,
    ) -> Result<Vec<Message>, ClientError> {
        self.request::<_, ()>(
            Method::GET,
            &format!("/messages/{chat}/sync?since={since}"),
            None,
        )
        .await
    }

    /// The change feed after `since`.
    pub async fn sync(&self, since: i64) -> Result<SyncResponse, ClientError> {
        self.request::<_, ()>(Method::GET, &format!("/sync?since={since}"), None)
            .await
    }

    /// Encrypts `text` to `peer` and sends it over REST with the idempotency key `temp_id`.
    pub async fn send_text(
        &self,
        chat: Uuid,
        peer: &PublicUser,
        text: &str,
        temp_id: &str,
    ) -> Result<SendMessageResponse, ClientError> {
        let receiver_key = PublicIdKey::from_bytes(peer.public_id_key.as_bytes())?;
        let now = OffsetDateTime::now_utc();
        let timestamp_ms = envelope::timestamp_ms(now);
        let context = envelope::MessageContext {
            chat_id: chat,
            sender: self.user.id,
            receiver: peer.id,
            client_timestamp_ms: timestamp_ms,
            temp_message_id: temp_id.to_owned(),
        };
        let sealed = envelope::seal(
            self.ring.current(),
            &receiver_key,
            &context,
            text.as_bytes(),
        )?;
        let whole_ms =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(timestamp_ms) * 1_000_000)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let body = json!({
            "chatId": chat,
            "receiver": peer.id,
            "cipher": sealed.cipher,
            "iv": sealed.iv,
            "signature": sealed.signature,
            "senderPublicIdKey": sealed.sender_public_id_key,
            "senderPublicSigningKey": sealed.sender_public_signing_key,
            "receiverPublicIdKey": sealed.receiver_public_id_key,
            "clientTimestamp": whole_ms.format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| ClientError::Protocol(e.to_string()))?,
            "tempMessageId": temp_id,
        });
        self.request(Method::POST, &format!("/messages/{chat}"), Some(&body))
            .await
    }

    /// Decrypts a message of a chat with `peer` (received from them, or sent by this user on
    /// any device), checking the keys against `peer`'s directory entry.
    pub fn decrypt(&self, message: &Message, peer: &PublicUser) -> Result<String, ClientError> {
        let context = envelope::MessageContext::from_message(message);
        let sealed = envelope::Envelope::from_message(message);
        let plain = if message.sender == self.user.id {
            let receiver = PublicIdKey::from_bytes(peer.public_id_key.as_bytes())?;
            envelope::open_sent(&self.ring, &[receiver], &context, &sealed)?
        } else {
            let keys = PublicKeys::from_bytes(
                peer.public_id_key.as_bytes(),
                peer.public_signing_key.as_bytes(),
            )?;
            envelope::open(&self.ring, &[keys], &context, &sealed)?
        };
        String::from_utf8(plain)
            .map_err(|_| ClientError::Protocol("the plaintext is not UTF-8".to_owned()))
    }

    /// Marks the chat read up to a sequence number.
    pub async fn mark_read(
        &self,
        chat: Uuid,
        up_to: i64,
    ) -> Result<serde_json::Value, ClientError> {
        self.request(
            Method::POST,
            &format!("/messages/{chat}/read"),
            Some(&json!({ "upToSequence": up_to })),
        )
        .await
    }

    /// Revokes this session's refresh-token family.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let body = json!({ "refreshToken": self.refresh_token() });
        call::<serde_json::Value>(
            &self.http,
            Method::POST,
            api_url(&self.base, "/auth/logout"),
            None,
            Some(&body),
        )
        .await
        .map(|_| ())
    }
}
