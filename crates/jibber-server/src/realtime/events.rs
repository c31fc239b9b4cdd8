//! Client → server events. Each is rate limited per user and event, parsed into its type (a
//! bad payload is VALIDATION_FAILED, never a panic), and answered through the Socket.IO
//! acknowledgement with `{ok: true, data}` or `{ok: false, error}`; a refused event is also
//! reported with an `error` event.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use jibber_proto::ErrorCode;
use jibber_proto::api::{DeliveredReceipt, ReadReceipt, SendMessageRequest};
use jibber_proto::events::{
    self, Ack, EventError, MarkDelivered, MarkRead, OnlineUsers, RefreshToken, SetActiveChat,
    Typing,
};
use jibber_store::util::now_ms;
use serde::Serialize;
use serde::de::{DeserializeOwned, Deserializer as _, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::FromMessageParts;
use uuid::Uuid;

use super::auth::{self, Session, session};
use super::notify;
use crate::error::{ApiError, ApiResult};
use crate::service;
use crate::state::AppState;

/// Runs one event: rate limit, parse, handle, acknowledge.
async fn handle<T, D, F, Fut>(
    state: AppState,
    socket: SocketRef,
    event: &'static str,
    data: Payload<T>,
    ack: AckSender,
    f: F,
) where
    T: DeserializeOwned,
    D: Serialize,
    F: FnOnce(AppState, SocketRef, Arc<Session>, T) -> Fut,
    Fut: Future<Output = ApiResult<D>>,
{
    let Some(session) = session(&socket) else {
        return;
    };
    metrics::counter!("jibber_socket_events_total", "event" => event).increment(1);
    let result = async {
        state.realtime.check_rate(session.user, event).await?;
        let payload: T = match data {
            Payload::Parsed(payload) => payload,
            Payload::Raw(raw) => parse_event(event, raw.as_deref())?,
        };
        // Boxed: the handlers' futures are large, and inline they made this whole future (which
        // socketioxide moves into a task for every event) several kilobytes to copy.
        Box::pin(f(state.clone(), socket.clone(), session.clone(), payload)).await
    }
    .await;
    match result {
        Ok(data) => {
            let _ = ack.send(&Ack {
                ok: true,
                data: Some(data),
                error: None,
            });
        }
        Err(e) => {
            metrics::counter!("jibber_errors_total", "code" => e.code.as_str()).increment(1);
            if e.code == ErrorCode::Internal {
                tracing::error!(
                    event,
                    detail = e.detail.as_deref().unwrap_or(""),
                    "socket event failed"
                );
            }
            let error = EventError {
                code: e.code,
                message: if e.code == ErrorCode::Internal && state.settings.is_production() {
                    e.message.to_string()
                } else {
                    match (&e.detail, e.code) {
                        (Some(d), ErrorCode::Internal) => format!("{}: {d}", e.message),
                        _ => e.message.to_string(),
                    }
                },
                event: Some(event.to_owned()),
                retry_after_ms: e.retry_after,
            };
            let _ = ack.send(&Ack::<Value> {
                ok: false,
                data: None,
                error: Some(error.clone()),
            });
            notify::emit_to_socket(&socket, events::ERROR, &error);
        }
    }
}

/// Parses an event's payload (absent is `null`); a bad one is VALIDATION_FAILED naming the
/// event and the field.
///
/// A good payload is parsed once, straight from its JSON text into `T`: socketioxide hands the
/// payload over unparsed ([`RawValue`]), where a `serde_json::Value` would first build a map
/// of owned strings (that and reading `T` from it were ~17 % of the runtime thread's
/// instructions in the relay, BENCHMARKS.md session 9). Anything that fails is parsed again
/// exactly as before, as a `Value` and then with `serde_path_to_error` to name the field, so the
/// answer to a bad payload, and what a good one means, do not change.
pub fn parse_event<T: DeserializeOwned>(event: &str, data: Option<&RawValue>) -> ApiResult<T> {
    if let Some(raw) = data
        && let Ok(payload) = serde_json::from_str::<T>(raw.get())
    {
        return Ok(payload);
    }
    let data = match data {
        Some(raw) => serde_json::from_str::<Value>(raw.get())
            .map_err(|e| ApiError::validation(format!("{event}: {e}")))?,
        None => Value::Null,
    };
    T::deserialize(&data).or_else(|_| {
        serde_path_to_error::deserialize(data)
            .map_err(|e| ApiError::validation(format!("{event}: {e}")))
    })
}

/// An event's payload, as the handler's extractor took it from the packet.
///
/// The common case is parsed into `T` straight from the packet's text (`["event", payload]`), in
/// one pass. Anything else (no payload, more than one argument, binary attachments, a payload
/// that does not parse as `T`) goes the general way: the payload's JSON text as socketioxide's
/// parser yields it, then [`parse_event`], whose errors name the field. A payload parsed here is
/// exactly what `parse_event` would make of that text; taking its text first was a second pass
/// over every event (~5 % of the runtime thread in the relay, BENCHMARKS.md session 19). The
/// extractor runs before the rate check, as the text's extraction did; a rate-limited event is
/// refused whatever its payload.
pub enum Payload<T> {
    Parsed(T),
    Raw(Option<Box<RawValue>>),
}

impl<T: DeserializeOwned, A: Adapter> FromMessageParts<A> for Payload<T> {
    type Error = Infallible;

    fn from_message_parts(
        s: &Arc<socketioxide::socket::Socket<A>>,
        v: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        if let socketioxide::handler::Value::Str(text, None) = v
            && let Some(payload) = parse_args(text.as_str())
        {
            return Ok(Payload::Parsed(payload));
        }
        let TryData(raw) = TryData::<(Box<RawValue>,)>::from_message_parts(s, v, ack_id)?;
        Ok(Payload::Raw(raw.ok().map(|(raw,)| raw)))
    }
}

/// `T` from an event's text `["name", payload]` with exactly one payload; `None` for anything
/// else (the caller then goes the general way).
pub fn parse_args<T: DeserializeOwned>(text: &str) -> Option<T> {
    struct Args<T>(PhantomData<T>);
    impl<'de, T: DeserializeOwned> Visitor<'de> for Args<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an event name and one payload")
        }
        fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<T, S::Error> {
            let missing = || serde::de::Error::custom("missing");
            seq.next_element::<IgnoredAny>()?.ok_or_else(missing)?;
            let payload = seq.next_element::<T>()?.ok_or_else(missing)?;
            match seq.next_element::<IgnoredAny>()? {
                None => Ok(payload),
                Some(_) => Err(serde::de::Error::custom("more than one payload")),
            }
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let payload = de.deserialize_seq(Args(PhantomData)).ok()?;
    de.end().ok()?;
    Some(payload)
}

/// Registers one event handler that parses its payload as `T`.
///
/// The payload is the one argument after the event name, taken by [`Payload`] (parsed in one
/// pass, or handed over as its JSON text for [`parse_event`]). An emit with more arguments than
/// the one payload is refused as VALIDATION_FAILED (it was parsed from its first argument
/// before; no client of the API sends more).
macro_rules! on {
    ($socket:expr, $state:expr, $event:expr, $handler:expr) => {{
        let state = $state.clone();
        $socket.on(
            $event,
            move |s: SocketRef, data: Payload<_>, ack: AckSender| {
                let state = state.clone();
                async move { handle(state, s, $event, data, ack, $handler).await }
            },
        );
    }};
}

/// A socket passed the middleware: register it, its handlers, and announce the user.
pub async fn on_connect(state: AppState, socket: SocketRef) {
    let Some(session) = session(&socket) else {
        let _ = socket.disconnect();
        return;
    };
    let user = session.user;
    let first_here = state.realtime.registry.add(user, socket.id);
    state.realtime.publish_counts(&state);
    metrics::counter!("jibber_socket_connections_total").increment(1);
    auth::start_timer(socket.clone(), session.clone());

    on!(socket, state, events::SEND_MESSAGE, send_message);
    on!(socket, state, events::MARK_DELIVERED, mark_delivered);
    on!(socket, state, events::MARK_READ, mark_read);
    on!(socket, state, events::SET_ACTIVE_CHAT, set_active_chat);
    on!(socket, state, events::TYPING, typing);
    on!(socket, state, events::HEARTBEAT, heartbeat);
    on!(
        socket,
        state,
        events::USER_AWAY,
        |st, _s, sess, _: Value| away(st, sess, true)
    );
    on!(
        socket,
        state,
        events::USER_BACK,
        |st, _s, sess, _: Value| away(st, sess, false)
    );
    on!(socket, state, events::PING, ping);
    on!(socket, state, events::REFRESH_TOKEN, refresh_token);

    let disconnect_state = state.clone();
    socket.on_disconnect(move |s: SocketRef| on_disconnect(disconnect_state.clone(), s));

    // Tell this device who of its peers is online, then tell the peers about this user.
    match state.store.chat_peers(user).await {
        Ok(peers) => {
            let online = state.realtime.online_among(peers).await;
            notify::emit_to_socket(
                &socket,
                events::ONLINE_USERS,
                &OnlineUsers { user_ids: online },
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot load chat peers"),
    }
    if first_here && state.realtime.join(user).await {
        notify::presence(&state, user, events::USER_ONLINE, None).await;
    }
}

/// Removes every trace of a socket; the user's last device takes the user offline.
async fn on_disconnect(state: AppState, socket: SocketRef) {
    let Some(session) = session(&socket) else {
        return;
    };
    session.stop_timer();
    let user = session.user;
    let last_here = state.realtime.registry.remove(user, socket.id);
    state.realtime.publish_counts(&state);
    let _ = state
        .realtime
        .cluster
        .set_active(user, &socket.id.to_string(), None)
        .await;
    if last_here && state.realtime.leave(user).await {
        super::nodes::went_offline(&state, user).await;
    }
}

async fn send_message(
    state: AppState,
    socket: SocketRef,
    session: Arc<Session>,
    req: SendMessageRequest,
) -> ApiResult<Box<RawValue>> {
    let chat = req
        .chat_id
        .ok_or_else(|| ApiError::validation("chatId: required"))?;
    let stored = service::send_message(&state, session.user, chat, req, Some(socket.id)).await?;
    Ok(stored.ack)
}

async fn mark_delivered(
    state: AppState,
    _socket: SocketRef,
    session: Arc<Session>,
    p: MarkDelivered,
) -> ApiResult<DeliveredReceipt> {
    service::mark_delivered(&state, session.user, p.message_id).await
}

async fn mark_read(
    state: AppState,
    _socket: SocketRef,
    session: Arc<Session>,
    p: MarkRead,
) -> ApiResult<ReadReceipt> {
    let (chat, up_to) = match (p.chat_id, p.up_to_sequence, p.message_id) {
        (Some(chat), Some(up_to), None) => (chat, up_to),
        (None, None, Some(id)) => {
            let m = state
                .store
                .message_for(session.user, id)
                .await
                .map_err(|e| match e {
                    jibber_store::StoreError::NotFound => ApiError::not_found("message"),
                    other => other.into(),
                })?;
            (m.chat_id, m.sequence_number)
        }
        _ => {
            return Err(ApiError::validation(
                "markMessageAsRead: send {chatId, upToSequence} or {messageId}",
            ));
        }
    };
    service::mark_read(&state, session.user, chat, up_to).await
}

async fn set_active_chat(
    state: AppState,
    socket: SocketRef,
    session: Arc<Session>,
    p: SetActiveChat,
) -> ApiResult<Value> {
    let chat = if p.active_chat_id.is_empty() {
        None
    } else {
        let chat = Uuid::parse_str(&p.active_chat_id)
            .map_err(|_| ApiError::validation("activeChatId: must be a chat id or \"\""))?;
        state
            .store
            .chat_members(session.user, chat)
            .await
            .map_err(service::chat_not_found)?;
        Some(chat)
    };
    state
        .realtime
        .registry
        .set_active_chat(session.user, socket.id, chat);
    let _ = state
        .realtime
        .cluster
        .set_active(session.user, &socket.id.to_string(), chat)
        .await;
    Ok(json!({ "activeChatId": chat }))
}

async fn typing(
    state: AppState,
    _socket: SocketRef,
    session: Arc<Session>,
    p: Typing,
) -> ApiResult<Value> {
    let (me, other) = state
        .store
        .chat_members(session.user, p.chat_id)
        .await
        .map_err(service::chat_not_found)?;
    if p.is_typing {
        let generation = state.realtime.start_typing(me, p.chat_id, other);
        notify::typing(&state, me, p.chat_id, other, true);
        let state = state.clone();
        let chat = p.chat_id;
        tokio::spawn(async move {
            tokio::time::sleep(state.settings.typing_timeout).await;
            if state
                .realtime
                .stop_typing_if(me, chat, Some(generation))
                .is_some()
            {
                notify::typing(&state, me, chat, other, false);
            }
        });
    } else if state.realtime.stop_typing_if(me, p.chat_id, None).is_some() {
        notify::typing(&state, me, p.chat_id, other, false);
    }
    Ok(json!({ "chatId": p.chat_id, "isTyping": p.is_typing }))
}

/// A device is in use: its user is not idle (see [`super::registry`]); a user who was idle is
/// back. Answers the server's time.
async fn heartbeat(
    state: AppState,
    _socket: SocketRef,
    session: Arc<Session>,
    _p: Value,
) -> ApiResult<Value> {
    if state
        .realtime
        .registry
        .heartbeat(session.user, std::time::Instant::now())
    {
        notify::presence(&state, session.user, events::USER_BACK, None).await;
    }
    Ok(
        json!({ "serverTime": now_ms().format(&time::format_description::well_known::Rfc3339).unwrap_or_default() }),
    )
}

async fn away(state: AppState, session: Arc<Session>, away: bool) -> ApiResult<Value> {
    if state
        .realtime
        .registry
        .set_away(session.user, away, std::time::Instant::now())
    {
        let event = if away {
            events::USER_AWAY
        } else {
            events::USER_BACK
        };
        notify::presence(&state, session.user, event, None).await;
    }
    Ok(json!({ "away": away }))
}

async fn ping(
    _state: AppState,
    socket: SocketRef,
    _session: Arc<Session>,
    _p: Value,
) -> ApiResult<Value> {
    let now = now_ms()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    notify::emit_to_socket(&socket, events::PONG, &json!({ "serverTime": now }));
    Ok(json!({ "serverTime": now }))
}

async fn refresh_token(
    state: AppState,
    _socket: SocketRef,
    session: Arc<Session>,
    p: RefreshToken,
) -> ApiResult<Value> {
    let expires_at = auth::refresh(&state, &session, &p.token)?;
    Ok(json!({ "expiresAt": expires_at }))
}

impl super::Realtime {
    /// Records that `user` types in `chat`; returns the generation that a later stop must match.
    fn start_typing(&self, user: Uuid, chat: Uuid, other: Uuid) -> u64 {
        let generation = self
            .typing_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.typing_lock().insert((user, chat), (generation, other));
        generation
    }

    /// Ends a typing indicator (only the given generation, if any); returns the other member
    /// when one was live.
    fn stop_typing_if(&self, user: Uuid, chat: Uuid, generation: Option<u64>) -> Option<Uuid> {
        let mut typing = self.typing_lock();
        match typing.get(&(user, chat)) {
            Some((g, other)) if generation.is_none_or(|want| want == *g) => {
                let other = *other;
                typing.remove(&(user, chat));
                Some(other)
            }
            _ => None,
        }
    }

    /// Ends every typing indicator of `user`: (chat, other member) of each.
    pub(crate) fn clear_typing(&self, user: Uuid) -> Vec<(Uuid, Uuid)> {
        let mut typing = self.typing_lock();
        let mine: Vec<(Uuid, Uuid)> = typing
            .iter()
            .filter(|((u, _), _)| *u == user)
            .map(|((_, chat), (_, other))| (*chat, *other))
            .collect();
        for (chat, _) in &mine {
            typing.remove(&(user, *chat));
        }
        mine
    }
}

#[cfg(test)]
mod tests {
    use jibber_proto::events::MarkRead;
    use serde_json::value::RawValue;

    use super::{parse_args, parse_event};

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("valid JSON")
    }

    #[test]
    fn a_good_payload_is_parsed_from_its_text() {
        let id = uuid::Uuid::now_v7();
        let p = raw(&format!(r#"{{"chatId":"{id}","upToSequence":7}}"#));
        let m: MarkRead = parse_event("markMessageAsRead", Some(&p)).expect("valid");
        assert_eq!(m.chat_id, Some(id));
        assert_eq!(m.up_to_sequence, Some(7));
    }

    #[test]
    fn a_bad_payload_names_the_event_and_the_field() {
        let p = raw(r#"{"chatId":"not-a-uuid","upToSequence":7}"#);
        let e = parse_event::<MarkRead>("markMessageAsRead", Some(&p)).expect_err("invalid");
        assert_eq!(e.code, jibber_proto::ErrorCode::ValidationFailed);
        assert!(
            e.message.starts_with("markMessageAsRead: chatId: "),
            "{}",
            e.message
        );
        let missing = parse_event::<MarkRead>("markMessageAsRead", None).expect_err("null");
        assert_eq!(missing.code, jibber_proto::ErrorCode::ValidationFailed);
    }

    #[test]
    fn what_parsed_as_a_value_before_still_parses() {
        // A repeated key: the text parser refuses it, the map keeps the last one, as before.
        let p = raw(r#"{"upToSequence":1,"upToSequence":9}"#);
        let m: MarkRead = parse_event("markMessageAsRead", Some(&p)).expect("as before");
        assert_eq!(m.up_to_sequence, Some(9));
    }

    #[test]
    fn the_one_pass_parse_takes_only_what_the_general_way_gives_alike() {
        let id = uuid::Uuid::now_v7();
        let payload = format!(r#"{{"chatId":"{id}","upToSequence":7}}"#);
        // The common case: parsed in one pass, to what the general way makes of its payload.
        for text in [
            format!(r#"["markMessageAsRead",{payload}]"#),
            format!(" [ \"markMessageAsRead\" ,\n{payload} ] "),
        ] {
            let fast: MarkRead = parse_args(&text).expect("one pass");
            let general: MarkRead =
                parse_event("markMessageAsRead", Some(&raw(&payload))).expect("general");
            assert_eq!(
                (fast.chat_id, fast.up_to_sequence, fast.message_id),
                (general.chat_id, general.up_to_sequence, general.message_id),
                "{text}"
            );
        }
        // Everything else is left to the general way (which refuses it, names the field, or
        // keeps its older reading), so what a client sees does not change.
        for text in [
            r#"["markMessageAsRead"]"#.to_owned(),
            format!(r#"["markMessageAsRead",{payload},1]"#),
            format!(r#"["markMessageAsRead",{payload}] x"#),
            r#"["markMessageAsRead",{"chatId":"not-a-uuid","upToSequence":7}]"#.to_owned(),
            r#"["markMessageAsRead",{"upToSequence":1,"upToSequence":9}]"#.to_owned(),
            r#"["markMessageAsRead",null]"#.to_owned(),
            r#"{"markMessageAsRead":1}"#.to_owned(),
            "not json".to_owned(),
            String::new(),
        ] {
            assert!(parse_args::<MarkRead>(&text).is_none(), "{text}");
        }
        // A payload of any JSON value: exactly the second element.
        let v: serde_json::Value = parse_args(r#"["userAway",{"a":[1,"x"]}]"#).expect("value");
        assert_eq!(v, serde_json::json!({"a": [1, "x"]}));
    }
}
