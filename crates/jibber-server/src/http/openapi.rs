//! The OpenAPI document of the REST API, generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types of jibber-proto, served at `/api/v1/openapi.json`.
//!
//! Every operation may also answer with the error envelope: [`CommonErrors`] adds those
//! responses to all operations in one place instead of on each handler.

use std::sync::OnceLock;

use axum::Json;
use axum::response::{IntoResponse, Response};
use jibber_proto::ErrorCode;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi as Document, RefOr, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{auth, chats, messages, ops, users};

/// `{"success": true, "data": null}`.
#[derive(Serialize, ToSchema)]
pub struct Done {
    pub success: bool,
    pub data: (),
}

/// The data of `register/finish`: `{"user": Me}`.
#[derive(Serialize, ToSchema)]
pub struct Registered {
    pub user: jibber_proto::api::Me,
}

/// `{"success": ..., "data": {"ready": ...}}`.
#[derive(Serialize, ToSchema)]
pub struct ReadyEnvelope {
    pub success: bool,
    pub data: Ready,
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    pub ready: bool,
}

/// The error envelope every failure has (API.md, "Errors").
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// Always false.
    pub success: bool,
    pub error: ErrorBody,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    pub status_code: u16,
    pub request_id: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Jibber REST API", description = "The REST half of the contract in API.md; realtime events travel over Socket.IO."),
    paths(
        auth::register_start, auth::register_finish, auth::login_start, auth::login_finish,
        auth::refresh, auth::refresh_socket_token, auth::logout,
        users::me, users::key_bundle, users::rotate_keys, users::profile, users::contacts,
        chats::create, chats::list,
        messages::history, messages::send, messages::chat_sync, messages::delivered,
        messages::read, messages::sync,
        ops::health, ops::ready,
    ),
    components(schemas(ErrorEnvelope, ErrorCode)),
    modifiers(&CommonErrors),
)]
pub struct ApiDoc;

/// The error responses any operation may give, with the bearer scheme and the request id
/// header.
pub struct CommonErrors;

/// The statuses every operation may answer with the error envelope: bad input and a body over
/// the limit anywhere, a token or rate limit where they apply, a chat or id that is not the
/// caller's, and the server's own failures.
const ERROR_STATUSES: &[(&str, &str)] = &[
    (
        "400",
        "VALIDATION_FAILED: the input does not have the required shape or values",
    ),
    ("401", "UNAUTHENTICATED, TOKEN_EXPIRED or INVALID_TOKEN"),
    (
        "404",
        "NOT_FOUND: nothing there, or nothing the caller may see",
    ),
    ("409", "CONFLICT"),
    ("413", "PAYLOAD_TOO_LARGE"),
    ("429", "RATE_LIMITED (with Retry-After)"),
    ("500", "INTERNAL"),
    (
        "503",
        "SERVICE_UNAVAILABLE: the database does not answer, or a timeout",
    ),
];

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        let request_id = HeaderBuilder::new()
            .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::String))
            .description(Some("The request's ID (the caller's, or a new UUIDv7)"))
            .build();
        let error_content = ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "ErrorEnvelope",
            ))))
            .build();
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                for response in op.responses.responses.values_mut() {
                    if let RefOr::T(r) = response {
                        r.headers
                            .insert("X-Request-ID".to_owned(), request_id.clone());
                    }
                }
                for (status, description) in ERROR_STATUSES {
                    op.responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(*description)
                                .header("X-Request-ID", request_id.clone())
                                .content("application/json", error_content.clone())
                                .into()
                        });
                }
            }
        }
    }
}

/// The document as JSON, built once.
pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).expect("the document serializes"))
}

/// GET /api/v1/openapi.json
pub async fn serve() -> Response {
    Json(document()).into_response()
}
