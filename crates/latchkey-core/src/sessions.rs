//! Sessions and tokens (`auth.sessions()`): issuing them, refresh-token rotation with reuse
//! detection, DPoP binding, verifying access tokens, the step-up a change needs, sign-out and
//! revocation; and the assurance (`acr`, `amr`) a set of verified methods gives.
//!
//! Invariants:
//! - A refresh token is used once; presenting a spent one ends its whole family (the session).
//! - A device-bound session's tokens are refused without a DPoP proof by the bound key.

use crate::auth::{Auth, Presented, Principal, audit, secs};
use crate::clock::rfc3339;
use crate::crypto::sha256_b64;
use crate::dpop::{self, DpopProof};
use crate::error::AuthError;
use crate::factors::{ACTIVE, is_strong};
use crate::ids::{FlowId, SessionId};
use crate::model::*;
use crate::secret::{SecretString, ct_eq, random_token};
use crate::store::{Batch, RotateOutcome, Write};
use crate::tokens::{AccessClaims, Confirmation, TokenError};
use latchkey_proto as proto;
use time::OffsetDateTime;

/// Sessions and tokens: a room of the service, borrowing its shared context.
pub struct Sessions<'a> {
    pub(crate) auth: &'a Auth,
}

impl Auth {
    /// Sessions and tokens: issue, refresh, DPoP checks, sign-out, revocation.
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions { auth: self }
    }
}

impl Sessions<'_> {
    /// A new session for `user`, started by the flow `flow_id` with the methods `amr`; its
    /// network and user agent become familiar to the risk policy.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn new_session(
        &self,
        flow_id: FlowId,
        user: &User,
        amr: &[&str],
        device: Option<&Device>,
        now: OffsetDateTime,
        ctx: &ClientContext,
        batch: &mut Batch,
    ) -> Result<(Session, proto::Tokens), AuthError> {
        let (session, refresh) = self.open_session(flow_id, user, amr, device, now, ctx, batch);
        let tokens = self.tokens_for(&session, user, refresh, now, "sign_in").await?;
        Ok((session, tokens))
    }

    /// A new session's writes, pushed onto `batch`: the session, its first refresh token (the
    /// secret returned; its hash is what is stored) and the sightings it leaves. Its tokens are
    /// [`Self::tokens_for`] the session and that refresh token.
    #[allow(clippy::too_many_arguments)] // the session's facts and the batch it adds to
    pub(crate) fn open_session(
        &self,
        flow_id: FlowId,
        user: &User,
        amr: &[&str],
        device: Option<&Device>,
        now: OffsetDateTime,
        ctx: &ClientContext,
        batch: &mut Batch,
    ) -> (Session, SecretString) {
        let t = &self.auth.settings.tokens;
        let session = Session {
            id: SessionId::new(),
            user_id: user.id,
            acr: assurance(amr, self.auth.settings.mfa.require_phishing_resistant).into(),
            amr: with_mfa(amr),
            auth_time: now,
            created_at: now,
            last_refresh_at: now,
            expires_at: now + secs(t.session_absolute_ttl_secs),
            revoked_at: None,
            revoke_reason: None,
            context: ctx.clone(),
            device_id: device.map(|d| d.id),
            // A device session is bound to its possession key (RFC 9449).
            dpop_jkt: device.and_then(|d| dpop::thumbprint(&d.possession_key)),
            flow_id: Some(flow_id),
            step_up_required_at: None,
        };
        for w in self.auth.sightings_of(user.id, ctx, now) {
            batch.push(w);
        }
        let refresh = random_token(self.auth.rng.as_ref(), 32);
        batch.push(Write::InsertSession(session.clone())).push(Write::InsertRefreshToken {
            hash: sha256_b64(refresh.expose().as_bytes()),
            session_id: session.id,
            created_at: now,
        });
        (session, refresh)
    }

    /// The tokens of `session`: an access token (with `user`'s custom attributes that are
    /// claims, `[[policy.attributes]]` with `claim = true`, and the claims the
    /// `custom_access_token` hook adds for `trigger`) and the refresh token given.
    pub(crate) async fn tokens_for(
        &self,
        session: &Session,
        user: &User,
        refresh: SecretString,
        now: OffsetDateTime,
        trigger: &str,
    ) -> Result<proto::Tokens, AuthError> {
        let extra = self.auth.hook_claims(session, user, trigger).await?;
        self.signed(session, user, refresh, now, extra)
    }

    /// As [`Self::tokens_for`], with the hook's claims already asked for.
    fn signed(
        &self,
        session: &Session,
        user: &User,
        refresh: SecretString,
        now: OffsetDateTime,
        extra: std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<proto::Tokens, AuthError> {
        let t = &self.auth.settings.tokens;
        let mut custom = crate::attributes::claims(&self.auth.settings.attributes, &user.profile.custom);
        custom.extend(extra);
        let claims = AccessClaims {
            iss: t.issuer.clone(),
            aud: t.audience.clone(),
            sub: session.user_id.to_string(),
            sid: session.id.to_string(),
            exp: (now + secs(t.access_ttl_secs)).unix_timestamp(),
            iat: now.unix_timestamp(),
            jti: random_token(self.auth.rng.as_ref(), 16).expose().to_owned(),
            client_id: t.audience.clone(),
            acr: session.acr.clone(),
            amr: session.amr.clone(),
            auth_time: session.auth_time.unix_timestamp(),
            cnf: session.dpop_jkt.clone().map(|jkt| Confirmation { jkt }),
            custom,
        };
        Ok(proto::Tokens {
            access_token: self.auth.signer.sign(&claims)?,
            refresh_token: refresh.expose().to_owned(),
            // RFC 9449 §5: a bound token's type is DPoP.
            token_type: if session.dpop_jkt.is_some() { "DPoP" } else { "Bearer" }.into(),
            expires_in: t.access_ttl_secs,
        })
    }

    /// `POST /v1/token` with `grant_type=refresh_token`: rotate (RFC 9700 §4.14.2).
    /// A device session's refresh needs `proof`, a DPoP proof by the device's possession key
    /// (RFC 9449 §5); without it, or with another key's, nothing changes and the answer is
    /// `invalid_dpop_proof`.
    pub async fn refresh(
        &self,
        req: proto::TokenRequest,
        proof: Option<DpopProof>,
        ctx: ClientContext,
    ) -> Result<proto::Tokens, AuthError> {
        if req.grant_type != "refresh_token" {
            return Err(AuthError::UnsupportedGrantType);
        }
        let now = self.auth.now();
        let refused = |reason| AuthError::InvalidDpopProof { reason, resource: false };
        if let Some(p) = &proof {
            self.check_dpop(p, "POST", "/v1/token", None, now, false).await?;
        }
        let old = sha256_b64(req.refresh_token.as_bytes());
        // The backend's claims are asked for before the token is spent: a hook that fails
        // refuses this refresh and leaves the refresh token as it was, to be tried again.
        let extra = self.refresh_claims(&old).await?;
        let fresh = random_token(self.auth.rng.as_ref(), 32);
        let idle_cutoff = now - secs(self.auth.settings.tokens.session_idle_ttl_secs);
        let jkt = proof.as_ref().map(|p| p.jkt.as_str());
        match self
            .auth
            .store
            .rotate_refresh(&old, &sha256_b64(fresh.expose().as_bytes()), now, idle_cutoff, jkt)
            .await?
        {
            RotateOutcome::Rotated(session) => {
                let user = self.auth.store.user_by_id(session.user_id).await?;
                let Some(user) = user.filter(|u| u.status == UserStatus::Active) else {
                    self.auth
                        .apply(Batch(vec![Write::RevokeSession {
                            id: session.id,
                            at: now,
                            reason: "account_inactive".into(),
                        }]))
                        .await?;
                    return Err(AuthError::InvalidGrant);
                };
                let mut batch = Batch(vec![audit(
                    now,
                    Some(session.user_id),
                    "refresh",
                    "success",
                    &ctx,
                    serde_json::json!({"session_id": session.id}),
                )]);
                for w in self.auth.moved_session(&session, &ctx, now) {
                    batch.push(w);
                }
                self.auth.apply(batch).await?;
                let extra = match extra {
                    Some(extra) => extra,
                    None => self.auth.hook_claims(&session, &user, "refresh").await?,
                };
                self.signed(&session, &user, fresh, now, extra)
            }
            RotateOutcome::Reused(sid) => {
                let user = self.auth.store.session(sid).await?.map(|s| s.user_id);
                self.auth
                    .apply(Batch(vec![audit(
                        now,
                        user,
                        "refresh_reuse",
                        "family_revoked",
                        &ctx,
                        serde_json::json!({"session_id": sid}),
                    )]))
                    .await?;
                Err(AuthError::InvalidGrant)
            }
            RotateOutcome::Invalid => Err(AuthError::InvalidGrant),
            RotateOutcome::ProofMismatch => Err(refused(if proof.is_some() {
                "the proof is not signed by the key this session is bound to"
            } else {
                "this refresh token is bound to a device key: send a DPoP proof by it"
            })),
        }
    }

    /// With a `custom_access_token` hook, the claims for the session of refresh token `hash`
    /// (`None` without a hook, or when the token names no live session: rotation decides).
    async fn refresh_claims(
        &self,
        hash: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, serde_json::Value>>, AuthError> {
        if self.auth.hooks.policy(crate::hooks::Hook::CustomAccessToken).is_none() {
            return Ok(None);
        }
        let Some((sid, false)) = self.auth.store.refresh_token(hash).await? else { return Ok(None) };
        let Some(session) = self.auth.store.session(sid).await?.filter(|s| s.revoked_at.is_none()) else {
            return Ok(None);
        };
        let Some(user) = self.auth.store.user_by_id(session.user_id).await? else { return Ok(None) };
        Ok(Some(self.auth.hook_claims(&session, &user, "refresh").await?))
    }

    /// The checks on a DPoP proof that need the clock, the store and the issuer (RFC 9449
    /// §4.3): method, URL, `iat` within ±60 s, `ath` when an access token comes with it, and
    /// first use of its `jti`. The signature was checked by the HTTP layer.
    pub(crate) async fn check_dpop(
        &self,
        p: &DpopProof,
        method: &str,
        path: &str,
        ath: Option<&str>,
        now: OffsetDateTime,
        resource: bool,
    ) -> Result<(), AuthError> {
        let refused = |reason| Err(AuthError::InvalidDpopProof { reason, resource });
        if p.htm != method {
            return refused("htm is not this request's method");
        }
        if dpop::target_uri(&p.htu) != format!("{}{path}", self.auth.settings.tokens.issuer) {
            return refused("htu is not this request's URL");
        }
        // abs_diff: an iat near i64::MIN or MAX must not overflow.
        if p.iat.abs_diff(now.unix_timestamp()) > dpop::IAT_WINDOW_SECS.unsigned_abs() {
            return refused("iat is more than 60 seconds from the server's time");
        }
        if let Some(ath) = ath
            && p.ath.as_deref().is_none_or(|a| !ct_eq(a.as_bytes(), ath.as_bytes()))
        {
            return refused("ath is not the hash of this access token");
        }
        let id = sha256_b64(format!("{}.{}", p.jkt, p.jti).as_bytes());
        let keep_until = OffsetDateTime::from_unix_timestamp(p.iat + dpop::IAT_WINDOW_SECS).unwrap_or(now);
        if !self.auth.store.use_dpop_proof(&id, keep_until.max(now)).await? {
            return refused("this proof (jti) was used already");
        }
        Ok(())
    }

    /// Verify an access token and load its live session and user. Revocation and account
    /// disablement take effect here, on the next request. A token bound to a device key
    /// (`cnf.jkt`) must come as `Authorization: DPoP` with a proof by that key for this request.
    pub async fn authenticate(&self, presented: Presented<'_>) -> Result<Principal, AuthError> {
        let claims = self.auth.signer.verify(presented.token).map_err(|e| match e {
            TokenError::Signing(m) => AuthError::Internal(m),
            _ => AuthError::Unauthenticated,
        })?;
        let at = self.auth.now();
        let now = at.unix_timestamp();
        if claims.exp <= now || claims.iat > now + 60 {
            return Err(AuthError::Unauthenticated);
        }
        let refused = |reason| AuthError::InvalidDpopProof { reason, resource: true };
        match (&claims.cnf, presented.dpop_scheme) {
            (Some(cnf), true) => {
                let p = presented.proof.as_ref().ok_or(refused("a DPoP proof is required with this token"))?;
                if !ct_eq(p.jkt.as_bytes(), cnf.jkt.as_bytes()) {
                    return Err(refused("the proof is not signed by the key this token is bound to"));
                }
                let ath = dpop::access_token_hash(presented.token);
                self.check_dpop(p, presented.method, presented.path, Some(&ath), at, true).await?;
            }
            // RFC 9449 §7.2: a bound token sent as a plain bearer token is refused.
            (Some(_), false) => return Err(refused("this token is bound to a device key: use Authorization: DPoP")),
            (None, true) => return Err(AuthError::Unauthenticated),
            (None, false) => {}
        }
        let sid: SessionId = claims.sid.parse().map_err(|_| AuthError::Unauthenticated)?;
        let session = self.auth.store.session(sid).await?.ok_or(AuthError::Unauthenticated)?;
        if session.revoked_at.is_some() || session.user_id.to_string() != claims.sub {
            return Err(AuthError::Unauthenticated);
        }
        let user = self.auth.store.user_by_id(session.user_id).await?.ok_or(AuthError::Unauthenticated)?;
        if user.status != UserStatus::Active {
            return Err(AuthError::Unauthenticated);
        }
        Ok(Principal { claims, session, user })
    }

    /// `POST /v1/sign-out`.
    pub async fn sign_out(
        &self,
        p: &Principal,
        scope: proto::SignOutScope,
        ctx: ClientContext,
    ) -> Result<(), AuthError> {
        let now = self.auth.now();
        let revoke = match scope {
            proto::SignOutScope::Session => {
                Write::RevokeSession { id: p.session.id, at: now, reason: "sign_out".into() }
            }
            proto::SignOutScope::All => {
                Write::RevokeUserSessions { user_id: p.user.id, at: now, reason: "sign_out_all".into() }
            }
        };
        let scope_name = if scope == proto::SignOutScope::All { "all" } else { "session" };
        self.auth
            .apply(Batch(vec![
                revoke,
                audit(
                    now,
                    Some(p.user.id),
                    "sign_out",
                    "success",
                    &ctx,
                    serde_json::json!({"scope": scope_name, "session_id": p.session.id}),
                ),
            ]))
            .await?;
        Ok(())
    }

    /// `GET /v1/me/sessions`.
    pub async fn list(&self, p: &Principal) -> Result<proto::SessionList, AuthError> {
        self.list_of(p.user.id, Some(p.session.id)).await
    }

    /// A user's live sessions; `current` marks the caller's.
    pub(crate) async fn list_of(
        &self,
        user_id: crate::ids::UserId,
        current: Option<SessionId>,
    ) -> Result<proto::SessionList, AuthError> {
        let sessions = self.auth.store.live_sessions(user_id, self.auth.now()).await?;
        Ok(proto::SessionList {
            sessions: sessions
                .into_iter()
                .map(|s| proto::SessionInfo {
                    id: s.id.to_string(),
                    current: Some(s.id) == current,
                    acr: s.acr,
                    amr: s.amr,
                    auth_time: rfc3339(s.auth_time),
                    created_at: rfc3339(s.created_at),
                    last_refresh_at: rfc3339(s.last_refresh_at),
                    ip: s.context.ip,
                    user_agent: s.context.user_agent,
                })
                .collect(),
        })
    }

    /// `DELETE /v1/me/sessions/{id}`: only the caller's own sessions.
    pub async fn revoke(&self, p: &Principal, id: SessionId, ctx: ClientContext) -> Result<(), AuthError> {
        let session =
            self.auth.store.session(id).await?.filter(|s| s.user_id == p.user.id).ok_or(AuthError::NotFound)?;
        let now = self.auth.now();
        self.auth
            .apply(Batch(vec![
                Write::RevokeSession { id: session.id, at: now, reason: "revoked_by_user".into() },
                audit(
                    now,
                    Some(p.user.id),
                    "session_revoked",
                    "success",
                    &ctx,
                    serde_json::json!({"session_id": session.id}),
                ),
            ]))
            .await?;
        Ok(())
    }

    /// Checklist LIFE-1/LIFE-2: changing factors needs a sign-in within `step_up_max_age_secs`,
    /// at `aal2` once the account has a factor that can give it.
    pub(crate) fn require_step_up(&self, p: &Principal, factors: &[Factor]) -> Result<(), AuthError> {
        let max_age = self.auth.settings.mfa.step_up_max_age_secs;
        let strong = factors.iter().any(|f| is_strong(&f.kind) && f.state == ACTIVE);
        let required = if strong { "aal2" } else { "aal1" };
        let fresh = self.auth.now() - p.session.auth_time <= secs(max_age);
        let level = step_up_level(&p.session, self.auth.settings.mfa.require_phishing_resistant);
        // Checklist SES-8: a session that moved to another network or user agent steps up first.
        if !fresh || (strong && level == "aal1") || p.session.step_up_required_at.is_some() {
            return Err(AuthError::InsufficientAuthentication { acr: required, max_age });
        }
        Ok(())
    }
}

/// Whether the methods verified cover two distinct factor classes (knowledge, possession,
/// inherence). An email code is not a possession factor (NIST SP 800-63B-4 §3.1.3.1, checklist
/// OOB-7), and the same class twice is still one (checklist FLOW-2). A biometric (`fpt`, `face`,
/// `iris`) appears only with the device key it unlocked, as evidenced (checklist DEV-4).
pub(crate) fn two_classes(amr: &[&str]) -> bool {
    // `user`: a passkey's authenticator verified the user locally (PIN or biometric, it does
    // not say which): the second class of a multi-factor cryptographic authenticator.
    let knowledge = amr.iter().any(|m| matches!(*m, "pwd" | "pin" | "kba" | "user"));
    let possession = amr.iter().any(|m| matches!(*m, "otp" | "hwk" | "sms" | "swk" | "tel"));
    let inherence = amr.iter().any(|m| matches!(*m, "fpt" | "face" | "iris"));
    u8::from(knowledge) + u8::from(possession) + u8::from(inherence) >= 2
}

/// A session's level for a step-up and for what needs one: as `assurance`, without a remembered
/// client's key (`swk` without `user`), which never satisfies a step-up (checklist SES-9). A
/// synced passkey's `swk` comes with `user` (its authenticator verified the user) and counts.
pub(crate) fn step_up_level(session: &Session, phishing_resistant: bool) -> &'static str {
    // `aal3` came from an attested key verified in this session, never from a remembered one.
    if session.acr == "aal3" {
        return "aal3";
    }
    assurance(&counted_amr(&session.amr), phishing_resistant)
}

/// A session's methods that count towards a step-up: all but a remembered client's key (`swk`
/// without `user`; a synced passkey's `swk` comes with `user` and counts).
pub(crate) fn counted_amr(amr: &[String]) -> Vec<&str> {
    let passkey = amr.iter().any(|m| m == "user");
    amr.iter().map(String::as_str).filter(|m| *m != "swk" || passkey).collect()
}

/// Not an `amr` value: the mark a proof by a device-bound passkey whose attestation the policy
/// trusts (`[policy.passkeys] trusted_authenticators`) adds to the methods it verified, so
/// that `assurance` gives `aal3` (checklist decision 5). `with_mfa` drops it: it never reaches
/// a session's or a token's `amr`.
pub(crate) const ATTESTED_KEY: &str = "(attested hwk)";

/// NIST SP 800-63B-4 §2.2: two factors of different classes make `aal2`; one makes `aal1`;
/// a multi-factor hardware key whose attestation the policy trusts makes `aal3`.
/// Where policy requires a phishing-resistant authenticator, only a hardware key (`hwk`) or a passkey counts
/// (checklist FLOW-5). Computed from the methods verified in this flow, never cached.
pub(crate) fn assurance(amr: &[&str], phishing_resistant: bool) -> &'static str {
    // A synced passkey (`swk` with `user`) is bound to the relying party like a hardware key.
    let resistant = !phishing_resistant || amr.contains(&"hwk") || (amr.contains(&"swk") && amr.contains(&"user"));
    if !two_classes(amr) || !resistant {
        "aal1"
    } else if amr.contains(&ATTESTED_KEY) && amr.contains(&"hwk") && amr.contains(&"user") {
        "aal3"
    } else {
        "aal2"
    }
}

/// The RFC 8176 `amr`, with `mfa` when more than one factor class was verified.
pub(crate) fn with_mfa(amr: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = amr.iter().filter(|m| **m != ATTESTED_KEY).map(|s| (*s).to_owned()).collect();
    if two_classes(amr) {
        out.push("mfa".into());
    }
    out
}

pub(crate) fn amr_or_pwd(amr: &[String]) -> Vec<&str> {
    if amr.is_empty() { vec!["pwd"] } else { amr.iter().map(String::as_str).collect() }
}
