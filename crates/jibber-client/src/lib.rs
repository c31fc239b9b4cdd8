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
//! - [`sio`]: a Socket.IO v4 client (WebSocket or long-polling) for one connection.
//! - [`realtime::Client`]: the resilient client applications use: reconnects forever with
//!   backoff and jitter, refreshes its token in-band, keeps unsent messages in an [`outbox`] on
//!   disk, catches up after any gap, and hands everything to the application as typed
//!   [`realtime::Event`]s.

pub mod outbox;
pub mod realtime;
pub mod sio;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// The local outbox could not be read or written.
    #[error("local storage: {0}")]
    Storage(String),
    /// The socket failed (see [`sio::SioError`]).
    #[error("socket: {0}")]
    Socket(#[from] sio::SioError),
    /// An event was refused by the server with its stable code.
    #[error("{}: {}", .0.code, .0.message)]
    Event(jibber_proto::events::EventError),
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
            ClientError::Event(e) => Some(e.code),
            ClientError::Socket(sio::SioError::Refused { code, .. }) => *code,
            _ => None,
        }
    }

    /// Whether trying again later can succeed (the server or network was the problem, not the
    /// request).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable(_) | ClientError::Socket(_) | ClientError::Storage(_) => true,
            ClientError::Api(_) | ClientError::Event(_) => matches!(
                self.code(),
                Some(
                    ErrorCode::RateLimited
                        | ErrorCode::Internal
                        | ErrorCode::ServiceUnavailable
                        | ErrorCode::TokenExpired
                )
            ),
            _ => false,
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
    call_envelope(http, method, url, token, body)
        .await
        .map(|e| e.data)
}

/// One HTTP exchange: the whole success envelope (with `pagination`), or the error.
async fn call_envelope<T: DeserializeOwned>(
    http: &reqwest::Client,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<Wrapped<T>, ClientError> {
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
        return serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("HTTP {status}: {e}")));
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
    register_with(base, username, password, ksf, None, None).await
}

/// [`register`] with the optional profile fields of API.md.
pub async fn register_with(
    base: &str,
    username: &str,
    password: &str,
    ksf: &argon2::Argon2<'static>,
    display_name: Option<&str>,
    email: Option<&str>,
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
    let mut body = json!({
        "username": username,
        "registrationRecord": B64::encode(&finish.message.serialize()),
        "publicIdKey": B64::encode(public.id_key.as_bytes()),
        "publicSigningKey": B64::encode(public.signing_key.as_bytes()),
        "keyBundle": B64::encode(&sealed),
    });
    if let Some(name) = display_name {
        body["displayName"] = json!(name);
    }
    if let Some(email) = email {
        body["email"] = json!(email);
    }
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
    login_with_export_key(base, username, password, ksf)
        .await
        .map(|(session, _)| session)
}

/// [`login`], also returning the OPAQUE export key (which seals the key bundle).
async fn login_with_export_key(
    base: &str,
    username: &str,
    password: &str,
    ksf: &argon2::Argon2<'static>,
) -> Result<(Session, zeroize::Zeroizing<Vec<u8>>), ClientError> {
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
    let export_key = zeroize::Zeroizing::new(finish.export_key.to_vec());
    let session = Session {
        http,
        base: base.trim_end_matches('/').to_owned(),
        user: tokens.user,
        ring,
        tokens: Mutex::new(Tokens {
            access: tokens.access_token,
            expires_at: Instant::now() + Duration::from_secs(tokens.expires_in),
            lifetime: Duration::from_secs(tokens.expires_in),
            refresh: tokens.refresh_token,
        }),
        refreshing: tokio::sync::Mutex::new(()),
        refresh_ahead: AtomicBool::new(true),
    };
    Ok((session, export_key))
}

struct Tokens {
    access: String,
    expires_at: Instant,
    lifetime: Duration,
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
    /// Refresh before the access token expires (see [`Session::set_refresh_ahead`]).
    refresh_ahead: AtomicBool,
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

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// How long until the access token should be refreshed (zero when it is due now): a
    /// minute before it expires, or after three quarters of its life when it is short.
    pub fn refresh_due_in(&self) -> Duration {
        let t = self.tokens();
        let margin = REFRESH_MARGIN.min(t.lifetime / 4);
        t.expires_at
            .saturating_duration_since(Instant::now() + margin)
    }

    /// The current refresh token (for a client that persists its session).
    pub fn refresh_token(&self) -> String {
        self.tokens().refresh.clone()
    }

    /// Whether the access token is refreshed before it expires (on by default). Off, it is
    /// refreshed only when the server answers that it expired (`TOKEN_EXPIRED` on a REST call or
    /// a refused socket handshake): for a client whose clock cannot be trusted (a machine that
    /// slept keeps a monotonic clock that did not), and for tests of that path.
    pub fn set_refresh_ahead(&self, on: bool) {
        self.refresh_ahead.store(on, Ordering::Relaxed);
    }

    /// See [`Session::set_refresh_ahead`].
    pub fn refreshes_ahead(&self) -> bool {
        self.refresh_ahead.load(Ordering::Relaxed)
    }

    /// An access token that is not yet due for refresh (refreshing first if it is; with
    /// [`Session::set_refresh_ahead`] off, the current one as it is).
    pub async fn access_token(&self) -> Result<String, ClientError> {
        if !self.refreshes_ahead() || !self.refresh_due_in().is_zero() {
            return Ok(self.tokens().access.clone());
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
        t.lifetime = Duration::from_secs(fresh.expires_in);
        t.expires_at = Instant::now() + t.lifetime;
        Ok(fresh.access_token)
    }

    /// An authenticated call; refreshes once and retries on `TOKEN_EXPIRED`.
    pub async fn request<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.request_envelope(method, path, body)
            .await
            .map(|e| e.data)
    }

    /// A GET of one page of a list (`data` and `pagination`).
    async fn request_paged<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Wrapped<Vec<T>>, ClientError> {
        self.request_envelope::<Vec<T>, ()>(Method::GET, path, None)
            .await
    }

    /// An authenticated call returning the whole success envelope.
    async fn request_envelope<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Wrapped<T>, ClientError> {
        let body = body
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let token = self.access_token().await?;
        let url = api_url(&self.base, path);
        match call_envelope(
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
                call_envelope(&self.http, method, url, Some(&token), body.as_ref()).await
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

    /// Every chat, most recent first (all pages).
    pub async fn chats_all(&self) -> Result<Vec<Chat>, ClientError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/chats?limit=200&cursor={c}"),
                None => "/chats?limit=200".to_owned(),
            };
            let page = self.request_paged::<Chat>(&path).await?;
            all.extend(page.data);
            match page.pagination.and_then(|p| p.next_cursor) {
                Some(next) if !next.is_empty() => cursor = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// A page of a chat's history ending before sequence `before` (None: the newest),
    /// chronological.
    pub async fn history(
        &self,
        chat: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>, ClientError> {
        let path = match before {
            Some(b) => format!("/messages/{chat}?limit={limit}&before={b}"),
            None => format!("/messages/{chat}?limit={limit}"),
        };
        self.request::<_, ()>(Method::GET, &path, None).await
    }

    /// Marks a received message delivered (once; repeats are harmless).
    pub async fn mark_delivered(&self, message: Uuid) -> Result<(), ClientError> {
        self.request::<serde_json::Value, ()>(
            Method::POST,
            &format!("/messages/{message}/delivered"),
            None,
        )
        .await
        .map(|_| ())
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
        let body = self.seal_text(chat, peer, text, temp_id)?;
        self.request(Method::POST, &format!("/messages/{chat}"), Some(&body))
            .await
    }

    /// The body of a send (REST `POST /messages/{chatId}` or the `sendMessage` event): `text`
    /// sealed to `peer` (docs/crypto.md), with the idempotency key `temp_id`.
    pub fn seal_text(
        &self,
        chat: Uuid,
        peer: &PublicUser,
        text: &str,
        temp_id: &str,
    ) -> Result<serde_json::Value, ClientError> {
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
        Ok(json!({
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
        }))
    }

    /// Decrypts a message of a chat with `peer` (received from them, or sent by this user on
    /// any device), checking the keys against `peer`'s directory entry.
    pub fn decrypt(&self, message: &Message, peer: &PublicUser) -> Result<String, ClientError> {
        self.decrypt_known(message, std::slice::from_ref(peer))
    }

    /// [`Session::decrypt`] accepting any of the peer's known key sets (the directory's
    /// current one and those seen before a rotation).
    pub fn decrypt_known(
        &self,
        message: &Message,
        peer_keys: &[PublicUser],
    ) -> Result<String, ClientError> {
        let context = envelope::MessageContext::from_message(message);
        let sealed = envelope::Envelope::from_message(message);
        let plain = if message.sender == self.user.id {
            let receivers = peer_keys
                .iter()
                .map(|p| PublicIdKey::from_bytes(p.public_id_key.as_bytes()))
                .collect::<Result<Vec<_>, _>>()?;
            envelope::open_sent(&self.ring, &receivers, &context, &sealed)?
        } else {
            let keys = peer_keys
                .iter()
                .map(|p| {
                    PublicKeys::from_bytes(
                        p.public_id_key.as_bytes(),
                        p.public_signing_key.as_bytes(),
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            envelope::open(&self.ring, &keys, &context, &sealed)?
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

    /// Rotates the user's keys: a new generation becomes current, the old ones stay in the
    /// sealed bundle so that old messages still open. The password re-derives the export key
    /// (the session never keeps it); the session continues with the new keys.
    pub async fn rotate_keys(
        &mut self,
        password: &str,
        ksf: &argon2::Argon2<'static>,
    ) -> Result<(), ClientError> {
        let (mut fresh, export_key) =
            login_with_export_key(&self.base, &self.user.username, password, ksf).await?;
        fresh.ring.rotate()?;
        let public = fresh.ring.current().public_keys();
        let sealed = bundle::seal(&fresh.ring, &export_key[..])?;
        let body = json!({
            "publicIdKey": B64::encode(public.id_key.as_bytes()),
            "publicSigningKey": B64::encode(public.signing_key.as_bytes()),
            "keyBundle": B64::encode(&sealed),
        });
        fresh.user = fresh
            .request(Method::PUT, "/users/me/keys", Some(&body))
            .await?;
        fresh.set_refresh_ahead(self.refreshes_ahead());
        *self = fresh;
        Ok(())
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
