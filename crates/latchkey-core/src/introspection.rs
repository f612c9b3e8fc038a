//! Token introspection (RFC 7662) and revocation (RFC 7009) for the app's backend
//! (`auth.sessions().introspect(…)`, `…revoke_token(…)`; checklist TOK-4, TOK-5).
//!
//! - A token is active while it verifies, has not expired, its session is live and its account
//!   active: the same test every authenticated request passes. An inactive or unknown token is
//!   only `{"active": false}`.
//! - Revoking a token (access or refresh) ends its session, so every token of it stops at the next
//!   request. A device session is bound to its key: only an authenticated backend revokes its
//!   tokens (anyone else's request is answered `200` and changes nothing, as for an unknown token).

use crate::auth::audit;
use crate::crypto::sha256_b64;
use crate::error::AuthError;
use crate::model::{ClientContext, Session, UserStatus};
use crate::sessions::Sessions;
use crate::store::{Batch, Write};
use latchkey_proto as proto;

impl Sessions<'_> {
    /// The live session behind `token` (an access token or a refresh token), with the claims of
    /// an access token.
    async fn session_of(
        &self,
        token: &str,
    ) -> Result<Option<(Session, Option<crate::tokens::AccessClaims>)>, AuthError> {
        let auth = self.auth;
        let now = auth.now();
        let (sid, claims) = match auth.signer.verify(token) {
            Ok(c) if c.exp > now.unix_timestamp() => match c.sid.parse() {
                Ok(sid) => (sid, Some(c)),
                Err(_) => return Ok(None),
            },
            Ok(_) => return Ok(None),
            // Not one of our JWTs: perhaps a refresh token, unspent.
            Err(_) => match auth.store.refresh_token(&sha256_b64(token.as_bytes())).await? {
                Some((sid, false)) => (sid, None),
                _ => return Ok(None),
            },
        };
        let Some(session) = auth.store.session(sid).await? else { return Ok(None) };
        if session.revoked_at.is_some() || session.expires_at <= now {
            return Ok(None);
        }
        let user = auth.store.user_by_id(session.user_id).await?;
        if !user.is_some_and(|u| u.status == UserStatus::Active) {
            return Ok(None);
        }
        Ok(Some((session, claims)))
    }

    /// `POST /v1/introspect`, for an authenticated backend.
    pub async fn introspect(&self, token: &str) -> Result<proto::Introspection, AuthError> {
        let t = &self.auth.settings.tokens;
        Ok(match self.session_of(token.trim()).await? {
            None => proto::Introspection::default(),
            Some((session, Some(c))) => proto::Introspection {
                active: true,
                token_type: Some("access_token".into()),
                client_id: Some(c.client_id),
                sub: Some(c.sub),
                aud: Some(c.aud),
                iss: Some(c.iss),
                exp: Some(c.exp),
                iat: Some(c.iat),
                jti: Some(c.jti),
                sid: Some(c.sid),
                acr: Some(c.acr),
                amr: Some(c.amr),
                auth_time: Some(c.auth_time),
                cnf: session.dpop_jkt.map(|jkt| proto::IntrospectionConfirmation { jkt }),
                claims: c.custom,
            },
            Some((session, None)) => proto::Introspection {
                active: true,
                token_type: Some("refresh_token".into()),
                client_id: Some(t.audience.clone()),
                sub: Some(session.user_id.to_string()),
                aud: Some(t.audience.clone()),
                iss: Some(t.issuer.clone()),
                exp: Some(session.expires_at.unix_timestamp()),
                iat: Some(session.last_refresh_at.unix_timestamp()),
                sid: Some(session.id.to_string()),
                acr: Some(session.acr),
                amr: Some(session.amr),
                auth_time: Some(session.auth_time.unix_timestamp()),
                cnf: session.dpop_jkt.map(|jkt| proto::IntrospectionConfirmation { jkt }),
                ..Default::default()
            },
        })
    }

    /// `POST /v1/revoke`: ends the session of `token`; an unknown, expired or already revoked
    /// token changes nothing. `backend` names an authenticated backend (none: the token's holder).
    pub async fn revoke_token(&self, token: &str, backend: Option<&str>, ctx: ClientContext) -> Result<(), AuthError> {
        let Some((session, _)) = self.session_of(token.trim()).await? else { return Ok(()) };
        if session.dpop_jkt.is_some() && backend.is_none() {
            return Ok(());
        }
        let now = self.auth.now();
        let detail = serde_json::json!({"session_id": session.id, "backend": backend});
        self.auth
            .apply(Batch(vec![
                Write::RevokeSession { id: session.id, at: now, reason: "token_revoked".into() },
                audit(now, Some(session.user_id), "token_revoked", "success", &ctx, detail),
            ]))
            .await?;
        Ok(())
    }
}
