//! Test harness: the real server on port 0 with a fresh database, and a client that speaks
//! OPAQUE with opaque-ke (cheap Argon2 parameters, same protocol).

use jibber_crypto::Suite;
use jibber_crypto::opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use jibber_proto::B64;
use jibber_server::testing::TestServer;
use rand::rngs::OsRng;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

/// The real server (`base`, `state`, `dir` through `Deref`) and an HTTP client.
pub struct TestApp {
    pub http: reqwest::Client,
    server: TestServer,
}

impl std::ops::Deref for TestApp {
    type Target = TestServer;
    fn deref(&self) -> &TestServer {
        &self.server
    }
}

/// A reply: status, headers and the JSON body (Null when there is none).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// The error message ("" when there is none).
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }

    /// Asserts the error envelope of API.md with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["success"], json!(false), "body: {}", self.body);
        assert_eq!(
            self.body["error"]["code"],
            json!(code),
            "body: {}",
            self.body
        );
        assert_eq!(
            self.body["error"]["statusCode"],
            json!(status),
            "body: {}",
            self.body
        );
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "body: {}",
            self.body
        );
        let rid = self
            .headers
            .get("x-request-id")
            .expect("x-request-id")
            .to_str()
            .expect("ascii");
        assert_eq!(self.body["error"]["requestId"], json!(rid));
    }
}

/// A signed-in test user.
#[derive(Clone, Debug)]
pub struct User {
    pub id: Uuid,
    pub username: String,
    pub access: String,
    pub refresh: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts a server with extra settings (key, value) on top of test defaults.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    TestApp {
        http: reqwest::Client::new(),
        server: TestServer::start(extra).await,
    }
}

fn password_ksf() -> argon2::Argon2<'static> {
    jibber_crypto::test_ksf()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// Reads a raw response into a [`Reply`].
    pub async fn reply(res: reqwest::Response) -> Reply {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::reply(req.send().await.expect("send")).await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let res = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics");
        res.text().await.expect("text")
    }

    /// POSTs a body as it is, labelled JSON (for malformed and oversized bodies).
    pub async fn post_raw(&self, path: &str, token: &str, body: String) -> Reply {
        let req = self
            .http
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body);
        Self::reply(req.send().await.expect("send")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.request(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.request(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// Registers with OPAQUE; returns the reply of register/finish.
    pub async fn register(&self, username: &str, password: &str) -> Reply {
        let start = ClientRegistration::<Suite>::start(&mut OsRng, password.as_bytes())
            .expect("client start");
        let r = self
            .post(
                "/auth/register/start",
                None,
                json!({ "username": username, "registrationRequest": B64::encode(&start.message.serialize()) }),
            )
            .await;
        if !r.status.is_success() {
            return r;
        }
        let response =
            B64::decode(r.data()["registrationResponse"].as_str().expect("response")).expect("b64");
        let ksf = password_ksf();
        let finish = start
            .state
            .finish(
                &mut OsRng,
                password.as_bytes(),
                RegistrationResponse::deserialize(&response).expect("response parses"),
                ClientRegistrationFinishParameters::new(Identifiers::default(), Some(&ksf)),
            )
            .expect("client finish");
        self.post(
            "/auth/register/finish",
            None,
            json!({
                "username": username,
                "registrationRecord": B64::encode(&finish.message.serialize()),
                "publicIdKey": B64::encode(&[1u8; 32]),
                "publicSigningKey": B64::encode(&[2u8; 32]),
                "keyBundle": B64::encode(&[3u8; 120]),
                "displayName": format!("{username} (test)"),
            }),
        )
        .await
    }

    /// Runs OPAQUE login/start; returns the login id and the raw response, and the client state.
    pub async fn login_start(
        &self,
        username: &str,
        password: &str,
    ) -> (Reply, Option<ClientLogin<Suite>>) {
        let start =
            ClientLogin::<Suite>::start(&mut OsRng, password.as_bytes()).expect("client start");
        let r = self
            .post(
                "/auth/login/start",
                None,
                json!({ "username": username, "startLoginRequest": B64::encode(&start.message.serialize()) }),
            )
            .await;
        (r, Some(start.state))
    }

    /// A full login; Err with the failing reply, or Err(None) when the client itself refused
    /// (wrong password or unknown user).
    pub async fn login(&self, username: &str, password: &str) -> Result<Reply, Option<Reply>> {
        let (r, state) = self.login_start(username, password).await;
        if !r.status.is_success() {
            return Err(Some(r));
        }
        let response =
            B64::decode(r.data()["loginResponse"].as_str().expect("loginResponse")).expect("b64");
        let ksf = password_ksf();
        let finish = state
            .expect("state")
            .finish(
                &mut OsRng,
                password.as_bytes(),
                CredentialResponse::deserialize(&response).expect("parses"),
                ClientLoginFinishParameters::new(None, Identifiers::default(), Some(&ksf)),
            )
            .map_err(|_| None)?;
        let reply = self
            .post(
                "/auth/login/finish",
                None,
                json!({ "loginId": r.data()["loginId"], "finishLoginRequest": B64::encode(&finish.message.serialize()) }),
            )
            .await;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(Some(reply))
        }
    }

    /// Registers and logs in a user with a unique name.
    pub async fn user(&self, prefix: &str) -> User {
        let username = format!("{prefix}{}", &Uuid::new_v4().simple().to_string()[..8]);
        let password = format!("pw-{username}");
        let r = self.register(&username, &password).await;
        assert_eq!(r.status, StatusCode::CREATED, "register: {}", r.body);
        let login = self
            .login(&username, &password)
            .await
            .unwrap_or_else(|e| panic!("login failed: {:?}", e.map(|r| r.body)));
        let d = login.data();
        User {
            id: Uuid::parse_str(d["user"]["id"].as_str().expect("id")).expect("uuid"),
            username,
            access: d["accessToken"].as_str().expect("access").to_owned(),
            refresh: d["refreshToken"].as_str().expect("refresh").to_owned(),
        }
    }

    /// Creates (or gets) the chat of `a` with `b`; returns its id.
    pub async fn chat(&self, a: &User, b: &User) -> Uuid {
        let r = self
            .post("/chats", Some(&a.access), json!({ "userId": b.id }))
            .await;
        assert!(r.status.is_success(), "create chat: {}", r.body);
        Uuid::parse_str(r.data()["id"].as_str().expect("id")).expect("uuid")
    }

    /// Sends a message over REST.
    pub async fn send(&self, from: &User, to: &User, chat: Uuid, temp: &str) -> Reply {
        self.post(
            &format!("/messages/{chat}"),
            Some(&from.access),
            message_body(chat, to.id, temp),
        )
        .await
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(self) {
        self.server.stop().await;
    }

    /// Stops the server, keeping its data directory and address to start it again.
    pub async fn park(self) -> jibber_server::testing::Parked {
        self.server.park().await
    }
}

/// A valid send body.
pub fn message_body(chat: Uuid, receiver: Uuid, temp: &str) -> Value {
    json!({
        "chatId": chat,
        "receiver": receiver,
        "cipher": B64::encode(temp.as_bytes()),
        "iv": B64::encode(&[9u8; 12]),
        "signature": B64::encode(&[8u8; 64]),
        "senderPublicIdKey": B64::encode(&[1u8; 32]),
        "senderPublicSigningKey": B64::encode(&[2u8; 32]),
        "receiverPublicIdKey": B64::encode(&[1u8; 32]),
        "clientTimestamp": "2026-11-22T10:00:00Z",
        "tempMessageId": temp,
    })
}
