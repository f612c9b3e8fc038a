//! Extractors: JSON bodies whose rejections are API errors, the client context, the principal.

use super::AppState;
use super::error::ApiError;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use latchkey_core::AuthError;
use latchkey_core::auth::{Presented, Principal};
use latchkey_core::dpop::DpopProof;
use latchkey_core::model::ClientContext;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

/// A JSON body; malformed input is `400 invalid_request` and changes nothing.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError(AuthError::PayloadTooLarge))
            }
            Err(rejection) => Err(ApiError(AuthError::InvalidRequest(rejection.body_text()))),
        }
    }
}

/// A query string; a malformed one is `400 invalid_request` with the JSON error body.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError(AuthError::InvalidRequest(rejection.body_text()))),
        }
    }
}

/// A form body (`application/x-www-form-urlencoded`); a malformed one is `400 invalid_request`
/// with the JSON error body.
pub struct ApiForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for ApiForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Form::<T>::from_request(req, state).await {
            Ok(axum::extract::Form(v)) => Ok(Self(v)),
            Err(rejection) => Err(ApiError(AuthError::InvalidRequest(rejection.body_text()))),
        }
    }
}

/// Who is calling: IP (the peer, or `X-Forwarded-For` when configured) and user agent.
pub struct Client(pub ClientContext);

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        let forwarded = state
            .trust_forwarded_for
            .then(|| {
                parts
                    .headers
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(',').next())
                    .map(|s| s.trim().to_owned())
            })
            .flatten()
            .filter(|s| s.parse::<std::net::IpAddr>().is_ok());
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect());
        // A genuine app's proof is checked once, here, whatever the route does with it
        // (`[policy.app_integrity]`, docs/attestation.md).
        let app_integrity = match parts.headers.get("latchkey-app-integrity") {
            None => None,
            Some(v) => Some(match v.to_str() {
                Ok(proof) => state.auth.verify_app_integrity(proof).await,
                Err(_) => Err("the Latchkey-App-Integrity header is not text".to_owned()),
            }),
        };
        Ok(Self(ClientContext { ip: forwarded.or(peer), user_agent, app_integrity }))
    }
}

/// The caller's verified access token, live session and user. A device session's token comes as
/// `Authorization: DPoP …` with a `DPoP` proof by the device's possession key (RFC 9449 §7).
pub struct Authenticated(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let (scheme, token) = authorization(parts).ok_or(ApiError(AuthError::Unauthenticated))?;
        let dpop_scheme = scheme.eq_ignore_ascii_case("dpop");
        if !dpop_scheme && !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError(AuthError::Unauthenticated));
        }
        let proof = dpop_proof(parts).map_err(|reason| AuthError::InvalidDpopProof { reason, resource: true })?;
        let presented = Presented { token, dpop_scheme, proof, method: parts.method.as_str(), path: parts.uri.path() };
        Ok(Self(state.auth.sessions().authenticate(presented).await?))
    }
}

/// An enrolled device signing its own request (`Authorization: Device <device id>` and a `DPoP`
/// proof by its possession key): how a phone fetches and answers push approvals without a
/// session.
pub struct SignedByDevice(pub latchkey_core::model::Device);

impl FromRequestParts<AppState> for SignedByDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let (scheme, device_id) = authorization(parts).ok_or(ApiError(AuthError::Unauthenticated))?;
        if !scheme.eq_ignore_ascii_case("device") {
            return Err(ApiError(AuthError::Unauthenticated));
        }
        let proof = dpop_proof(parts).map_err(|reason| AuthError::InvalidDpopProof { reason, resource: true })?;
        let device =
            state.auth.authenticate_device(device_id, proof.as_ref(), parts.method.as_str(), parts.uri.path()).await?;
        Ok(Self(device))
    }
}

/// The request's `DPoP` proof, its signature verified; at most one (RFC 9449 §4.3).
pub struct Dpop(pub Option<DpopProof>);

impl<S: Send + Sync> FromRequestParts<S> for Dpop {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let proof = dpop_proof(parts).map_err(|reason| AuthError::InvalidDpopProof { reason, resource: false })?;
        Ok(Self(proof))
    }
}

fn dpop_proof(parts: &Parts) -> Result<Option<DpopProof>, &'static str> {
    let mut values = parts.headers.get_all("dpop").iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err("more than one DPoP header");
    }
    crate::dpop::verify(value.to_str().map_err(|_| "the DPoP header is not ASCII")?).map(Some)
}

/// The `Authorization` scheme and credentials.
fn authorization(parts: &Parts) -> Option<(&str, &str)> {
    let v = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    Some((scheme, token.trim())).filter(|(_, t)| !t.is_empty())
}

/// The `Authorization: Bearer …` value.
pub fn bearer(parts: &Parts) -> Option<&str> {
    authorization(parts).filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer")).map(|(_, t)| t)
}
