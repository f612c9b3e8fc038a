//! Passkeys as flows (`docs/passkeys.md`): registering one (`POST /v1/me/factors
//! {"type":"passkey"}`, an `enroll` flow), signing in with one as the first factor
//! (`POST /v1/sign-in {"passkey":true}`, discoverable credentials: no username), and answering
//! the `passkey` step wherever a second factor is asked (sign-in, step-up, a new device's
//! second proof, a recovery's second proof). The ceremonies are webauthn-rs's; the challenge is
//! the flow's, single-use because the flow moves once.
//!
//! Checklist WA-1…WA-5: challenges of 32 random bytes in the flow; origin, rp id hash and
//! ceremony type checked by webauthn-rs against `[policy.passkeys]`; user verification
//! required at registration and assertion (recorded as `user` in `amr`); a signature counter
//! that does not increase refuses the sign-in and tells the owner (a cloned key); a credential
//! id registered to any account is refused; registering needs a recent `aal2` sign-in and
//! sends a notice.

use crate::auth::{Auth, FlowOutcome, OTP, Principal, StepEvent, audit, secs};
use crate::error::AuthError;
use crate::factors::passkey as pk;
use crate::flow::risk::Occasion;
use crate::ids::{FlowId, PasskeyId, UserId};
use crate::model::*;
use crate::sessions::{ATTESTED_KEY, step_up_level};
use crate::settings::RiskAction;
use crate::store::{Batch, StoreError, Write};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_proto::MfaMethod;
use time::OffsetDateTime;
use webauthn_rs::Webauthn;
use webauthn_rs::prelude::{
    AttestedPasskeyRegistration, AuthenticationResult, CredentialID, DiscoverableAuthentication, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, WebauthnError,
};

const STEP: &str = "passkey";

/// A verified assertion: whose passkey, and what the authenticator said.
struct Asserted {
    user: User,
    passkey: Passkey,
    result: AuthenticationResult,
}

impl Auth {
    /// The relying party, or `400` when passkeys are not configured.
    fn webauthn(&self) -> Result<Webauthn, AuthError> {
        if !self.settings.passkeys.enabled() {
            return Err(AuthError::InvalidRequest(
                "passkeys are not configured on this server ([policy.passkeys])".into(),
            ));
        }
        self.settings.passkeys.webauthn(&self.settings.product_name).map_err(AuthError::Internal)
    }

    /// `POST /v1/me/factors {"type":"passkey"}`: an `enroll` flow whose step is `passkey` with
    /// the creation options. Needs a sign-in at `aal2` from the last `step_up_max_age_secs`
    /// (checklist WA-5). `attested`: the authenticator must prove its model with an
    /// attestation that chains to `trusted_authenticators` (checklist WA-5: other formats and
    /// roots are refused), and must not be a synced passkey.
    pub(crate) async fn enroll_passkey(
        &self,
        p: &Principal,
        attested: bool,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let wa = self.webauthn()?;
        let now = self.now();
        let max_age = self.settings.mfa.step_up_max_age_secs;
        let level = step_up_level(&p.session, self.settings.mfa.require_phishing_resistant);
        if level == "aal1" || now - p.session.auth_time > secs(max_age) || p.session.step_up_required_at.is_some() {
            return Err(AuthError::InsufficientAuthentication { acr: "aal2", max_age });
        }
        let existing = self.store.passkeys(p.user.id).await?;
        let exclude: Vec<CredentialID> =
            existing.iter().filter_map(|k| URL_SAFE_NO_PAD.decode(&k.credential_id).ok()).collect();
        let display = p.user.profile.name.clone().unwrap_or_else(|| p.user.username.clone());
        let internal = |e: WebauthnError| AuthError::Internal(format!("passkey registration: {e}"));
        let (ccr, reg) = if attested {
            let cas = self.settings.passkeys.attestation_cas().map_err(AuthError::Internal)?.ok_or_else(|| {
                AuthError::InvalidRequest(
                    "attested: no authenticator is trusted on this server ([policy.passkeys] trusted_authenticators)"
                        .into(),
                )
            })?;
            let (ccr, reg) = wa
                .start_attested_passkey_registration(p.user.id.0, &p.user.username, &display, Some(exclude), cas, None)
                .map_err(internal)?;
            (ccr, json(&reg)?)
        } else {
            let (ccr, reg) = wa
                .start_passkey_registration(p.user.id.0, &p.user.username, &display, Some(exclude))
                .map_err(internal)?;
            (ccr, json(&reg)?)
        };
        let mut options = json(&ccr.public_key)?;
        // A passkey is a discoverable credential: it signs in with no username typed.
        if let Some(sel) = options.get_mut("authenticatorSelection").and_then(|v| v.as_object_mut()) {
            sel.insert("residentKey".into(), "required".into());
            sel.insert("requireResidentKey".into(), true.into());
        }
        let challenge = PasskeyChallenge { ceremony: "create".into(), options, state: reg, attested };
        let state = FlowState::AwaitingPasskeyRegistration { challenge: Box::new(challenge) };
        self.start_enrollment(p, FlowId::new(), state, "passkey", vec![], now, &ctx).await
    }

    /// The assertion a second-factor `passkey` step asks for: any of the account's passkeys,
    /// or only those that give `aal3` (`attested_only`, a step-up to `aal3`).
    pub(crate) async fn passkey_challenge(
        &self,
        user_id: UserId,
        attested_only: bool,
    ) -> Result<PasskeyChallenge, AuthError> {
        let wa = self.webauthn()?;
        let mut keys = self.store.passkeys(user_id).await?;
        if attested_only {
            keys.retain(|k| self.attested(k).is_some());
        }
        let creds = keys.iter().map(stored_credential).collect::<Result<Vec<_>, _>>()?;
        if creds.is_empty() {
            return Err(AuthError::InvalidRequest("the account has no passkey".into()));
        }
        let (rcr, state) = wa
            .start_passkey_authentication(&creds)
            .map_err(|e| AuthError::Internal(format!("passkey assertion: {e}")))?;
        Ok(PasskeyChallenge {
            ceremony: "get".into(),
            options: json(&rcr.public_key)?,
            state: json(&state)?,
            attested: attested_only,
        })
    }

    /// Whether `key` gives `aal3`: device-bound, with an attestation the policy trusts now.
    /// The trusted models' name.
    pub(crate) fn attested(&self, key: &Passkey) -> Option<String> {
        self.settings.passkeys.trusted_attestation(&key.credential, key.aaguid.as_deref(), key.backup_eligible)
    }

    /// The `amr` of a verified assertion by `key`, with the mark that gives `aal3` when the
    /// key is attested and the user verified.
    fn asserted_amr(&self, key: &Passkey, result: &AuthenticationResult) -> Vec<&'static str> {
        let mut amr = pk::amr(key.backup_eligible, result.user_verified());
        if result.user_verified() && self.attested(key).is_some() {
            amr.push(ATTESTED_KEY);
        }
        amr
    }

    /// `POST /v1/sign-in {"passkey": true}`: a sign-in flow whose step is `passkey`, for any of
    /// the relying party's discoverable credentials. The account is known only from the answer.
    pub(crate) async fn passkey_sign_in(&self, ctx: ClientContext) -> Result<FlowOutcome, AuthError> {
        let wa = self.webauthn()?;
        let now = self.now();
        let (rcr, state) =
            wa.start_discoverable_authentication().map_err(|e| AuthError::Internal(format!("passkey sign-in: {e}")))?;
        let challenge = PasskeyChallenge {
            ceremony: "get".into(),
            options: json(&rcr.public_key)?,
            state: json(&state)?,
            attested: false,
        };
        let flow = self.new_flow(
            FlowId::new(),
            FlowKind::SignIn,
            None,
            FlowState::AwaitingPasskeySignIn { challenge: Box::new(challenge) },
            now,
            ctx.clone(),
        );
        let event = audit(now, None, "sign_in", "passkey_challenge", &ctx, serde_json::json!({"flow_id": flow.id}));
        self.apply(Batch(vec![Write::InsertFlow(flow.clone()), event])).await?;
        Ok(Self::outcome(flow, vec![StepEvent { step: STEP, outcome: "issued" }]))
    }

    /// The answer to a `passkey` step, whichever ceremony it is.
    pub(crate) async fn passkey_answer(
        &self,
        flow: Flow,
        credential: serde_json::Value,
        name: Option<String>,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        match flow.state.clone() {
            FlowState::AwaitingPasskeyRegistration { challenge } => {
                self.finish_registration(flow, &challenge, credential, name, now, ctx).await
            }
            FlowState::AwaitingPasskeySignIn { challenge } => {
                self.finish_passkey_sign_in(flow, &challenge, credential, now, ctx).await
            }
            FlowState::AwaitingMfa {
                method: Some(MfaMethod::Passkey),
                passkey: Some(challenge),
                then_new_password,
                ..
            } => self.passkey_second_factor(flow, &challenge, credential, then_new_password, now, ctx).await,
            s => Err(AuthError::StepMismatch { expected: s.step_name() }),
        }
    }

    async fn finish_registration(
        &self,
        flow: Flow,
        challenge: &PasskeyChallenge,
        credential: serde_json::Value,
        name: Option<String>,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let user = self.user_of(&flow).await?.ok_or(AuthError::FlowExpired)?;
        let attempts = match self.reserve_attempt(&flow, STEP, Some(&user.username_canonical), OTP, now).await? {
            Ok(n) => n,
            Err(o) => return Ok(o),
        };
        let name = match name.as_deref().map(str::trim) {
            Some(n) if n.is_empty() || n.chars().count() > 64 || !crate::flows::device::shown_safely(n) => {
                return Err(AuthError::InvalidRequest("name: 1–64 characters, no links or markup".into()));
            }
            n => n.map(str::to_owned),
        };
        let aaguid = credential.pointer("/response/attestationObject").and_then(|v| v.as_str()).and_then(pk::aaguid);
        let cred: Option<RegisterPublicKeyCredential> = serde_json::from_value(credential).ok();
        let wa = self.webauthn()?;
        let registered = match &cred {
            None => None,
            // Checklist WA-5: an attestation that does not chain to a trusted root, of a model
            // the root does not vouch for, or of a synced passkey, is refused.
            Some(c) if challenge.attested => {
                let reg: AttestedPasskeyRegistration = from_state(&challenge.state)?;
                wa.finish_attested_passkey_registration(c, &reg).map(webauthn_rs::prelude::Passkey::from).ok()
            }
            Some(c) => {
                let reg: PasskeyRegistration = from_state(&challenge.state)?;
                wa.finish_passkey_registration(c, &reg).ok()
            }
        };
        let Some(key) = registered else {
            return self.refuse(&flow, STEP, attempts, false, now, &ctx).await;
        };
        let record = json(&key)?;
        let flag = |f: &str| record.pointer(&format!("/cred/{f}")).and_then(|v| v.as_bool()).unwrap_or(false);
        let sign_count = record.pointer("/cred/counter").and_then(|v| v.as_u64()).unwrap_or(0);
        let name =
            name.unwrap_or_else(|| aaguid.as_deref().and_then(pk::authenticator_name).unwrap_or("Passkey").to_owned());
        let passkey = Passkey {
            id: PasskeyId::new(),
            user_id: user.id,
            credential_id: URL_SAFE_NO_PAD.encode(key.cred_id().as_slice()),
            name: name.clone(),
            aaguid,
            credential: record.to_string(),
            sign_count: u32::try_from(sign_count).unwrap_or(u32::MAX),
            backup_eligible: flag("backup_eligible"),
            backed_up: flag("backup_state"),
            created_at: now,
            last_used_at: None,
        };
        let done = Flow { state: FlowState::Completed { session_id: None }, version: flow.version + 1, ..flow.clone() };
        let mut batch = Batch::new();
        batch
            .push(Write::InsertPasskey(passkey.clone()))
            .push(Write::ClearFailures { key: user.username_canonical.clone(), kind: OTP.into() })
            .push(Write::UpdateFlow { flow: done.clone(), expected_version: flow.version })
            .push(audit(
                now,
                Some(user.id),
                "factor_added",
                "success",
                &ctx,
                serde_json::json!({"passkey_id": passkey.id, "type": "passkey", "aaguid": passkey.aaguid,
                    "backup_eligible": passkey.backup_eligible}),
            ));
        // Checklist LIFE-1 and WA-5: every new passkey is announced.
        let (subject, body) = self.text(user.profile.locale.as_deref(), "passkey_added", &[("name", &name)]);
        for message in self.notification(&user, &subject, &body, now)? {
            batch.push(Write::Enqueue(message));
        }
        match self.apply(batch).await {
            Ok(()) => {}
            // Checklist WA-5: a credential id registered to any account already.
            Err(StoreError::Conflict("passkey")) => return self.refuse(&flow, STEP, attempts, false, now, &ctx).await,
            Err(StoreError::Conflict("flow")) => return Err(AuthError::FlowCompleted),
            Err(e) => return Err(e.into()),
        }
        Ok(FlowOutcome::verified(done, None, STEP))
    }

    async fn finish_passkey_sign_in(
        &self,
        flow: Flow,
        challenge: &PasskeyChallenge,
        credential: serde_json::Value,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let attempts = match self.reserve_attempt(&flow, STEP, None, OTP, now).await? {
            Ok(n) => n,
            Err(o) => return Ok(o),
        };
        let state: DiscoverableAuthentication = from_state(&challenge.state)?;
        let Some(asserted) = self.verify_assertion(&flow, credential, Ceremony::Discoverable(state), now, &ctx).await?
        else {
            return self.refuse(&flow, STEP, attempts, false, now, &ctx).await;
        };
        let Asserted { user, passkey, result } = asserted;
        let risk = self.assess(Some(&user), Occasion::Device, &ctx, now).await?;
        self.risk_delay(&risk).await;
        if risk.action == RiskAction::Deny {
            if let Some(w) = self.risk_record(&risk, Occasion::Device, Some(user.id), Some(flow.id), &ctx, now) {
                self.apply(Batch(vec![w])).await?;
            }
            return self.refuse(&flow, STEP, attempts, false, now, &ctx).await;
        }
        let amr = self.asserted_amr(&passkey, &result);
        let mut batch = Batch(
            self.risk_record(&risk, Occasion::Device, Some(user.id), Some(flow.id), &ctx, now).into_iter().collect(),
        );
        batch.push(used(&passkey, &result, now)?);
        let (session, tokens) = self.sessions().new_session(flow.id, &user, &amr, None, now, &ctx, &mut batch).await?;
        let done = Flow {
            state: FlowState::Completed { session_id: Some(session.id) },
            version: flow.version + 1,
            ..flow.clone()
        };
        batch.push(Write::UpdateFlow { flow: done.clone(), expected_version: flow.version }).push(audit(
            now,
            Some(user.id),
            "sign_in",
            "success",
            &ctx,
            serde_json::json!({"flow_id": flow.id, "method": "passkey", "passkey_id": passkey.id}),
        ));
        if let Some(refused) = self.commit_passkey(batch, &flow, attempts, now, &ctx).await? {
            return Ok(refused);
        }
        Ok(FlowOutcome::verified(done, Some(tokens), STEP))
    }

    async fn passkey_second_factor(
        &self,
        flow: Flow,
        challenge: &PasskeyChallenge,
        credential: serde_json::Value,
        then_new_password: bool,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let user = self.user_of(&flow).await?.ok_or(AuthError::FlowExpired)?;
        let attempts = match self.reserve_attempt(&flow, STEP, Some(&user.username_canonical), OTP, now).await? {
            Ok(n) => n,
            Err(o) => return Ok(o),
        };
        let state: PasskeyAuthentication = from_state(&challenge.state)?;
        let Some(Asserted { user, passkey, result }) =
            self.verify_assertion(&flow, credential, Ceremony::Account(state), now, &ctx).await?
        else {
            return self.refuse(&flow, STEP, attempts, false, now, &ctx).await;
        };
        let amr = self.asserted_amr(&passkey, &result);
        // A step-up to `aal3` offered only the keys that give it; one that no longer does
        // (its root removed from the policy since) does not meet it.
        if let FlowState::AwaitingMfa { step_up: Some(su), .. } = &flow.state
            && su.acr == "aal3"
            && !amr.contains(&ATTESTED_KEY)
        {
            return self.refuse(&flow, STEP, attempts, false, now, &ctx).await;
        }
        let mut batch = Batch::new();
        batch
            .push(used(&passkey, &result, now)?)
            .push(Write::ClearFailures { key: user.username_canonical.clone(), kind: OTP.into() });
        let (next, tokens) =
            self.after_proof(&flow, &user, MfaMethod::Passkey, &amr, then_new_password, now, &ctx, &mut batch).await?;
        if let Some(refused) = self.commit_passkey(batch, &flow, attempts, now, &ctx).await? {
            return Ok(refused);
        }
        Ok(FlowOutcome::verified(next, tokens, STEP))
    }

    /// Check an assertion: the platform's credential against the ceremony's state, the stored
    /// passkey it names (the account's own, for a second factor), an active account, and the
    /// signature counter (checklist WA-4: one that does not increase is a cloned key — refused,
    /// recorded and told to the owner). `None`: refused.
    async fn verify_assertion(
        &self,
        flow: &Flow,
        credential: serde_json::Value,
        ceremony: Ceremony,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<Option<Asserted>, AuthError> {
        let Ok(cred) = serde_json::from_value::<PublicKeyCredential>(credential) else { return Ok(None) };
        let wa = self.webauthn()?;
        let stored = self.store.passkey_by_credential(&URL_SAFE_NO_PAD.encode(cred.get_credential_id())).await?;
        let Some(passkey) = stored else { return Ok(None) };
        let result = match ceremony {
            Ceremony::Discoverable(state) => {
                // The user handle the authenticator returned must be the passkey's account.
                match wa.identify_discoverable_authentication(&cred) {
                    Ok((uid, _)) if uid == passkey.user_id.0 => {}
                    _ => return Ok(None),
                }
                wa.finish_discoverable_authentication_v2(&cred, state, &stored_credential(&passkey)?)
            }
            Ceremony::Account(state) => {
                if Some(passkey.user_id) != flow.user_id {
                    return Ok(None);
                }
                wa.finish_passkey_authentication(&cred, &state)
            }
        };
        let user = self.store.user_by_id(passkey.user_id).await?.filter(|u| u.status == UserStatus::Active);
        let result = match (result, user.as_ref()) {
            (Ok(r), Some(_)) => r,
            (Err(WebauthnError::CredentialPossibleCompromise), Some(user)) => {
                self.clone_suspected(user, &passkey, flow, now, ctx).await?;
                return Ok(None);
            }
            (Err(_), _) | (Ok(_), None) => return Ok(None),
        };
        // webauthn-rs compared the counter with the one in the ceremony's state; the stored
        // one may have moved since (another sign-in with the same authenticator).
        let counter = result.counter();
        if (counter != 0 || passkey.sign_count != 0) && counter <= passkey.sign_count {
            if let Some(user) = &user {
                self.clone_suspected(user, &passkey, flow, now, ctx).await?;
            }
            return Ok(None);
        }
        Ok(user.map(|user| Asserted { user, passkey, result }))
    }

    /// Checklist WA-4: record a counter that went backwards and tell the owner.
    async fn clone_suspected(
        &self,
        user: &User,
        passkey: &Passkey,
        flow: &Flow,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<(), AuthError> {
        metrics::counter!("latchkey_passkey_clone_suspected_total").increment(1);
        let mut batch = Batch::new();
        batch.push(audit(
            now,
            Some(user.id),
            "passkey",
            "clone_suspected",
            ctx,
            serde_json::json!({"flow_id": flow.id, "passkey_id": passkey.id, "stored_count": passkey.sign_count}),
        ));
        let (subject, body) = self.text(user.profile.locale.as_deref(), "passkey_cloned", &[("name", &passkey.name)]);
        for message in self.notification(user, &subject, &body, now)? {
            batch.push(Write::Enqueue(message));
        }
        self.apply(batch).await?;
        Ok(())
    }

    /// Commit a verified assertion; a parallel use of the same passkey that moved its counter
    /// first makes this one a refused answer.
    async fn commit_passkey(
        &self,
        batch: Batch,
        flow: &Flow,
        attempts: u32,
        now: OffsetDateTime,
        ctx: &ClientContext,
    ) -> Result<Option<FlowOutcome>, AuthError> {
        match self.apply(batch).await {
            Ok(()) => Ok(None),
            Err(StoreError::Conflict("passkey")) => Ok(Some(self.refuse(flow, STEP, attempts, true, now, ctx).await?)),
            Err(StoreError::Conflict("flow")) => Err(AuthError::FlowCompleted),
            Err(e) => Err(e.into()),
        }
    }
}

/// Which assertion ceremony: any discoverable credential, or one of a known account's.
enum Ceremony {
    Discoverable(DiscoverableAuthentication),
    Account(PasskeyAuthentication),
}

/// The write recording a use: the counter and backup state the assertion reported.
fn used(passkey: &Passkey, result: &AuthenticationResult, now: OffsetDateTime) -> Result<Write, AuthError> {
    let mut key = stored_credential(passkey)?;
    key.update_credential(result);
    Ok(Write::PasskeyUsed {
        id: passkey.id,
        seen_count: passkey.sign_count,
        credential: json(&key)?.to_string(),
        sign_count: result.counter(),
        backed_up: result.backup_state(),
        at: now,
    })
}

/// The stored webauthn-rs credential record.
fn stored_credential(k: &Passkey) -> Result<webauthn_rs::prelude::Passkey, AuthError> {
    serde_json::from_str(&k.credential).map_err(|_| AuthError::Internal("a stored passkey does not parse".into()))
}

fn json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, AuthError> {
    serde_json::to_value(v).map_err(|e| AuthError::Internal(e.to_string()))
}

fn from_state<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Result<T, AuthError> {
    serde_json::from_value(v.clone())
        .map_err(|_| AuthError::Internal("a passkey ceremony's state does not parse".into()))
}
