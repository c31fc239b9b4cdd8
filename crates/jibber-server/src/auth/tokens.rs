//! Access tokens (short-lived JWTs, HS256) and refresh tokens (random, stored hashed).

use std::time::Duration;

use jibber_proto::B64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

const ISSUER: &str = "jibber";
const ACCESS: &str = "access";

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    pub iss: String,
    pub iat: i64,
    pub exp: i64,
    /// Unique per token.
    pub jti: Uuid,
    /// Always "access": a token of another kind is refused.
    pub typ: String,
}

/// Why a presented access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("Token expired")]
    Expired,
    #[error("Invalid token")]
    Invalid,
}

/// Signs and checks access tokens.
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl AccessTokens {
    pub fn new(secret: &SecretString, ttl: Duration) -> Self {
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        AccessTokens {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            ttl,
        }
    }

    /// The configured lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new access token for `user`, and its lifetime in seconds.
    pub fn issue(&self, user: Uuid) -> (String, u64) {
        self.issue_at(user, OffsetDateTime::now_utc(), self.ttl)
    }

    /// A token issued at `now` that lives `ttl` (tests use it to make expired tokens).
    pub fn issue_at(&self, user: Uuid, now: OffsetDateTime, ttl: Duration) -> (String, u64) {
        let iat = now.unix_timestamp();
        let secs = ttl.as_secs();
        let claims = Claims {
            sub: user,
            iss: ISSUER.to_owned(),
            iat,
            exp: iat.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX)),
            jti: Uuid::new_v4(),
            typ: ACCESS.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail");
        (token, secs)
    }

    /// Checks a token: signature, algorithm, issuer, expiry and kind.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) if data.claims.typ == ACCESS => Ok(data.claims),
            Ok(_) => Err(TokenError::Invalid),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(TokenError::Expired)
            }
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

/// A new random refresh token (256 bits, base64url) and the hash to store.
pub fn new_refresh_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = B64::encode(&bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

/// The SHA-256 of a presented refresh token: the only form the database keeps.
pub fn hash_refresh_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random secret suitable for HS256 (384 bits, base64url).
pub fn new_jwt_secret() -> String {
    let mut bytes = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B64::encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> AccessTokens {
        AccessTokens::new(
            &SecretString::from(new_jwt_secret()),
            Duration::from_secs(900),
        )
    }

    #[test]
    fn issue_and_verify() {
        let t = tokens();
        let user = Uuid::now_v7();
        let (token, ttl) = t.issue(user);
        assert_eq!(ttl, 900);
        assert_eq!(t.verify(&token).expect("valid").sub, user);
    }

    #[test]
    fn expired_wrong_key_and_tampered() {
        let t = tokens();
        let user = Uuid::now_v7();
        let old = OffsetDateTime::now_utc() - time::Duration::hours(1);
        let (expired, _) = t.issue_at(user, old, Duration::from_secs(60));
        assert_eq!(t.verify(&expired).err(), Some(TokenError::Expired));
        let (other, _) = tokens().issue(user);
        assert_eq!(t.verify(&other).err(), Some(TokenError::Invalid));
        let (good, _) = t.issue(user);
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = B64::encode(
            format!(r#"{{"sub":"{}","iss":"jibber","iat":0,"exp":99999999999,"jti":"{}","typ":"access"}}"#, Uuid::now_v7(), Uuid::new_v4())
                .as_bytes(),
        );
        parts[1] = &forged;
        assert_eq!(t.verify(&parts.join(".")).err(), Some(TokenError::Invalid));
        // alg: none
        let none_header = B64::encode(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!(
            "{none_header}.{}.",
            good.split('.').nth(1).expect("payload")
        );
        assert_eq!(t.verify(&unsigned).err(), Some(TokenError::Invalid));
        assert_eq!(t.verify("garbage").err(), Some(TokenError::Invalid));
    }

    #[test]
    fn refresh_tokens_hash_stably() {
        let (token, hash) = new_refresh_token();
        assert_eq!(hash_refresh_token(&token), hash);
        assert_ne!(new_refresh_token().0, token);
    }
}
