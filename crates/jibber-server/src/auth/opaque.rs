//! The server half of OPAQUE (opaque-ke with the suite of `@serenity-kit/opaque`).
//!
//! The server never sees a password: registration stores opaque-ke's registration record,
//! login runs the two-step AKE. The credential identifier bound into every record is the
//! lower-cased username.

use jibber_crypto::Suite;
use jibber_crypto::opaque_ke::{
    CredentialFinalization, CredentialRequest, RegistrationRequest, RegistrationUpload,
    ServerLogin, ServerLoginParameters, ServerRegistration, ServerSetup,
};
use jibber_proto::B64;
use rand::rngs::OsRng;

/// An OPAQUE message or state that did not parse or verify. Deliberately without detail: the
/// caller turns it into a generic error.
#[derive(Debug, thiserror::Error)]
#[error("OPAQUE protocol error")]
pub struct OpaqueError;

/// Decodes a base64url server setup (as `server.createSetup()` of serenity-kit makes).
pub fn parse_server_setup(b64: &str) -> Result<ServerSetup<Suite>, OpaqueError> {
    let bytes = B64::decode(b64).map_err(|_| OpaqueError)?;
    ServerSetup::<Suite>::deserialize(&bytes).map_err(|_| OpaqueError)
}

/// A fresh random server setup, base64url.
pub fn new_server_setup() -> String {
    B64::encode(&ServerSetup::<Suite>::new(&mut OsRng).serialize())
}

/// The identifier bound into a user's record.
pub fn credential_identifier(username: &str) -> Vec<u8> {
    username.to_lowercase().into_bytes()
}

/// Registration, step one: the response to the client's blinded password.
pub fn registration_response(
    setup: &ServerSetup<Suite>,
    username: &str,
    request: &[u8],
) -> Result<Vec<u8>, OpaqueError> {
    let request = RegistrationRequest::<Suite>::deserialize(request).map_err(|_| OpaqueError)?;
    let result =
        ServerRegistration::<Suite>::start(setup, request, &credential_identifier(username))
            .map_err(|_| OpaqueError)?;
    Ok(result.message.serialize().to_vec())
}

/// Registration, step two: checks the client's upload and returns the record to store.
pub fn registration_record(upload: &[u8]) -> Result<Vec<u8>, OpaqueError> {
    let upload = RegistrationUpload::<Suite>::deserialize(upload).map_err(|_| OpaqueError)?;
    Ok(ServerRegistration::<Suite>::finish(upload)
        .serialize()
        .to_vec())
}

/// Login, step one. `record` is None for an unknown user: opaque-ke then answers with a dummy
/// response that fails at the client exactly as a wrong password does. Returns the response and
/// the serialized server state.
pub fn login_start(
    setup: &ServerSetup<Suite>,
    username: &str,
    record: Option<&[u8]>,
    request: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), OpaqueError> {
    let record = match record {
        Some(bytes) => {
            Some(ServerRegistration::<Suite>::deserialize(bytes).map_err(|_| OpaqueError)?)
        }
        None => None,
    };
    let request = CredentialRequest::<Suite>::deserialize(request).map_err(|_| OpaqueError)?;
    let result = ServerLogin::start(
        &mut OsRng,
        setup,
        record,
        request,
        &credential_identifier(username),
        ServerLoginParameters::default(),
    )
    .map_err(|_| OpaqueError)?;
    Ok((
        result.message.serialize().to_vec(),
        result.state.serialize().to_vec(),
    ))
}

/// Login, step two: verifies the client's finalization against the saved state.
pub fn login_finish(state: &[u8], finalization: &[u8]) -> Result<(), OpaqueError> {
    let state = ServerLogin::<Suite>::deserialize(state).map_err(|_| OpaqueError)?;
    let finalization =
        CredentialFinalization::<Suite>::deserialize(finalization).map_err(|_| OpaqueError)?;
    state
        .finish(finalization, ServerLoginParameters::default())
        .map_err(|_| OpaqueError)?;
    Ok(())
}
