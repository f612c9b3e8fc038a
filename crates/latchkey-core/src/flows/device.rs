//! Device keys: enrolling a device (two P-256 keys and an app PIN), signing in with it by
//! biometric key or by possession key + PIN, and replacing a device's biometric key. Listing,
//! removing and re-PINning devices are the account's (`account/devices.rs`).
//!
//! The PIN is an activation secret checked here, never on the phone (DESIGN.md): its Argon2id
//! hash lives only in the database, and five consecutive wrong PINs block it for that device.

use crate::auth::{Auth, FlowOutcome, OTP, Principal, StepEvent, audit, secs, step_error};
use crate::error::AuthError;
use crate::factors::device::{self as dk, KeyRole, Purpose};
use crate::flow::risk::Occasion;
use crate::flows::step_up::reaches;
use crate::hooks::Hook;
use crate::identity::{Phone, lookup_key};
use crate::ids::{DeviceId, FlowId};
use crate::model::*;
use crate::secret::{SecretString, random_token};
use crate::settings::RiskAction;
use crate::store::{Batch, StoreError, Write};
use latchkey_proto as proto;
use latchkey_proto::{Channel, DeviceKey, MfaMethod, codes};
use time::OffsetDateTime;

/// Consecutive wrong PINs after which a device's PIN is blocked.
pub(crate) const PIN_LIMIT: u32 = 5;

/// The device fields of an `enroll_device` answer.
pub struct DeviceEnrollment {
    /// Display name.
    pub name: String,
    /// Platform.
    pub platform: String,
    /// Possession key (SPKI DER or X9.63, Base64/Base64url).
    pub possession_key: String,
    /// Biometric key.
    pub biometric_key: String,
    /// Possession key's proof.
    pub possession_signature: String,
    /// Biometric key's proof.
    pub biometric_signature: String,
    /// App PIN.
    pub pin: SecretString,
    /// The platform's attestation of the biometric key.
    pub attestation: Option<proto::DeviceAttestation>,
}

/// A `rekey_biometric` answer.
pub struct NewBiometricKey {
    /// The new biometric key (SPKI DER or X9.63, Base64/Base64url).
    pub key: String,
    /// Its signature over the re-key message.
    pub signature: String,
    /// The platform's attestation of it.
    pub attestation: Option<proto::DeviceAttestation>,
}

impl Auth {
    /// `POST /v1/me/devices`: an `enroll` flow whose step is `enroll_device`. Needs a recent
    /// `aal2` sign-in (checklist LIFE-1).
    pub async fn enroll_device(&self, p: &Principal, ctx: ClientContext) -> Result<FlowOutcome, AuthError> {
        let now = self.now();
        let max_age = self.settings.mfa.step_up_max_age_secs;
        if now - p.session.auth_time > secs(max_age) || p.session.acr == "aal1" {
            return Err(AuthError::InsufficientAuthentication { acr: "aal2", max_age });
        }
        let state = FlowState::AwaitingDeviceEnrollment {
            amr: vec![],
            recovery: None,
            device_id: DeviceId::new(),
            nonce: random_token(self.rng.as_ref(), 32).expose().to_owned(),
        };
        self.start_enrollment(p, FlowId::new(), state, "device", vec![], now, &ctx).await
    }

    /// `enroll_device`: both keys prove possession by signing the enrolment message; the PIN
    /// follows the rules; then the device exists and every address of the account is told.
    pub(crate) async fn complete_device_enrollment(
        &self,
        flow: Flow,
        e: DeviceEnrollment,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let FlowState::AwaitingDeviceEnrollment { device_id, nonce, amr, recovery } = flow.state.clone() else {
            return Err(AuthError::StepMismatch { expected: flow.state.step_name() });
        };
        let step = "enroll_device";
        self.require_genuine_app(crate::factors::app_integrity::GatedAction::DeviceEnrollment, &ctx)?;
        let user = self.user_of(&flow).await?.ok_or(AuthError::FlowExpired)?;
        let bad = |what: &str, e: dk::KeyError| AuthError::InvalidRequest(format!("{what}: {e}"));
        let possession = dk::parse_public_key(&e.possession_key).map_err(|err| bad("possession_key", err))?;
        let biometric = dk::parse_public_key(&e.biometric_key).map_err(|err| bad("biometric_key", err))?;
        if possession == biometric {
            return Err(AuthError::InvalidRequest("the possession and biometric keys must differ".into()));
        }
        let (name, platform) = (e.name.trim(), e.platform.trim());
        if name.is_empty() || name.chars().count() > 64 || platform.is_empty() || platform.chars().count() > 32 {
            return Err(AuthError::InvalidRequest("name (1–64 characters) and platform (1–32) are required".into()));
        }
        // Both are echoed into security notices: no line breaks or invisible characters to forge
        // a notice's lines, and no link or markup to turn it into a lure.
        if [name, platform].iter().any(|s| !shown_safely(s)) {
            return Err(AuthError::InvalidRequest(
                "name and platform: no control or invisible characters, links or < >".into(),
            ));
        }
        let biometric_evidence = self.biometric_evidence(e.attestation.as_ref(), &biometric, &nonce, now)?;
        if let Err(reason) = dk::check_pin(e.pin.expose()) {
            let mut o = Self::outcome(flow, vec![StepEvent { step, outcome: "failed" }]);
            o.error = step_error(codes::INVALID_PIN, reason);
            return Ok(o);
        }
        let attempts = match self.reserve_attempt(&flow, step, None, OTP, now).await? {
            Ok(n) => n,
            Err(o) => return Ok(o),
        };
        let id = device_id.to_string();
        let proves = |role: KeyRole, point: &[u8], sig: &str| {
            dk::verify(
                point,
                dk::signed_message(Purpose::Enroll, &flow.id.to_string(), &nonce, role, &id).as_bytes(),
                sig,
            )
        };
        if !proves(KeyRole::Possession, &possession, &e.possession_signature)
            || !proves(KeyRole::Biometric, &biometric, &e.biometric_signature)
        {
            return self.refuse(&flow, step, attempts, false, now, &ctx).await;
        }
        let device = Device {
            id: device_id,
            user_id: user.id,
            name: name.to_owned(),
            platform: platform.to_owned(),
            possession_key: possession,
            biometric_key: biometric,
            biometric_evidence,
            push: None,
            pin_hash: self.hasher.hash(&e.pin).await?,
            pin_failures: 0,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        };
        let mut batch = Batch::new();
        // A recovery completes here: older sessions end (before this one starts) and every
        // channel is told; its notice says a device was added.
        if let Some(rec) = &recovery {
            self.finish_recovery(&user, rec, None, Some(device_id), &flow, now, &ctx, &mut batch).await?;
        }
        // In a sign-up, a new-device sign-in or a recovery, the enrolment completes it: a session
        // bound to the new device, with what this flow verified plus the device key.
        let (session_id, tokens) = if flow.kind == FlowKind::Enroll {
            (None, None)
        } else {
            let mut methods: Vec<&str> = amr.iter().map(String::as_str).collect();
            if !methods.contains(&"hwk") {
                methods.push("hwk");
            }
            let (session, tokens) =
                self.sessions().new_session(flow.id, &user, &methods, Some(&device), now, &ctx, &mut batch).await?;
            (Some(session.id), Some(tokens))
        };
        batch.push(Write::InsertDevice(device));
        let done = Flow { state: FlowState::Completed { session_id }, version: flow.version + 1, ..flow.clone() };
        batch.push(Write::UpdateFlow { flow: done.clone(), expected_version: flow.version }).push(audit(
            now,
            Some(user.id),
            "device_enrolled",
            "success",
            &ctx,
            serde_json::json!({"flow_id": flow.id, "device_id": device_id, "platform": platform}),
        ));
        // Every enrolment is announced on every channel, the user's other devices included, with
        // the way to undo it (DESIGN.md; checklist LIFE-1). A recovery announced it already.
        if recovery.is_none() {
            let link = self.undo_link(user.id, super::undo::Undo::Device, Some(device_id), now);
            let args = [("device", name), ("platform", platform), ("link", link.as_str())];
            let (subject, notice) = self.text(user.profile.locale.as_deref(), "device_added", &args);
            let data = proto::PushData { kind: "notice".into(), approval_id: None };
            for m in self.notify_everywhere(&user, &subject, &notice, &data, Some(device_id), now).await? {
                batch.push(Write::Enqueue(m));
            }
        }
        self.commit(batch, flow.id).await?;
        Ok(FlowOutcome::verified(done, tokens, step))
    }

    /// `POST /v1/sign-in {"username"}` without a password: the first sign-in on a new device of a
    /// passwordless account. An SMS code first; then, because SMS proves a number and not a
    /// device, a second proof (a verified email's code, TOTP or a recovery code, by policy); then
    /// `enroll_device`. Unknown usernames and accounts with a password get the same first step,
    /// with no message sent and no code that works.
    pub(crate) async fn new_device_sign_in(
        &self,
        raw_username: &str,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let now = self.now();
        let key = lookup_key(raw_username).map_err(|e| AuthError::InvalidRequest(e.to_string()))?;
        let user = self
            .store
            .user_by_username(&key)
            .await?
            // A number changed within the cooldown proves nothing yet (DESIGN.md).
            .filter(|u| u.status == UserStatus::Active && u.password_hash.is_none() && self.sms_trusted(u, now));
        // The risk policy: refused, the flow goes on as for a username with no account (a code
        // that never arrives), so the refusal is no oracle; a phishing-resistant factor means
        // the second proof is the enrolled phone's approval.
        let risk = self.assess(user.as_ref(), Occasion::NewDevice, &ctx, now).await?;
        self.risk_delay(&risk).await;
        let record = self.risk_record(&risk, Occasion::NewDevice, user.as_ref().map(|u| u.id), None, &ctx, now);
        let user = user.filter(|_| risk.action != RiskAction::Deny);
        let phone = user.as_ref().and_then(|u| u.phone.as_deref()).and_then(|p| Phone::parse(p).ok());
        match &phone {
            Some(p) if user.is_some() => self.check_send_limits(&key, Some(p.as_str()), &ctx, Channel::Sms).await?,
            _ => self.check_look_alike_limits(&key, None, &ctx, Channel::Sms).await?,
        }
        let flow_id = FlowId::new();
        let mut batch = Batch(record.into_iter().collect());
        let (code, second_proofs) = match (&user, &phone) {
            (Some(u), Some(p)) => {
                // The destination is not shown: it would tell who has an account.
                let (mut code, message) = self.issue_code(
                    flow_id,
                    Channel::Sms,
                    p.as_str(),
                    String::new(),
                    ("code_sign_in", u.profile.locale.as_deref()),
                    now,
                )?;
                code.destination = String::new();
                batch.push(Write::Enqueue(message));
                let factors = self.store.factors(u.id).await?;
                let methods = self.methods_of(u, &factors).await?;
                let allowed = &self.settings.devices.second_proofs;
                let mut proofs: Vec<MfaMethod> =
                    methods.into_iter().filter(|m| *m != MfaMethod::Sms && allowed.contains(m)).collect();
                if allowed.contains(&MfaMethod::Email) && u.email_verified && !proofs.contains(&MfaMethod::Email) {
                    proofs.push(MfaMethod::Email);
                }
                if risk.action == RiskAction::RequirePhishingResistant {
                    proofs.retain(|m| *m == MfaMethod::PushApproval);
                }
                (code, proofs)
            }
            _ => (self.unknowable_code(flow_id, Channel::Sms, String::new(), now), vec![]),
        };
        let state = FlowState::AwaitingMfa {
            method: Some(MfaMethod::Sms),
            methods: vec![MfaMethod::Sms],
            code: Some(code),
            then_new_password: false,
            new_device: Some(NewDevice { verified: vec![], second_proofs }),
            push: None,
            recovery: None,
            step_up: None,
            custom: None,
            passkey: None,
        };
        let user_id = user.as_ref().map(|u| u.id);
        let flow = self.new_flow(flow_id, FlowKind::SignIn, user_id, state, now, ctx.clone());
        batch.push(Write::InsertFlow(flow.clone())).push(audit(
            now,
            user_id,
            "sign_in",
            if user_id.is_some() { "new_device" } else { "new_device_unknown" },
            &ctx,
            serde_json::json!({"flow_id": flow.id}),
        ));
        self.apply(batch).await?;
        Ok(Self::outcome(flow, vec![StepEvent { step: "sms_code", outcome: "issued" }]))
    }

    /// `POST /v1/sign-in {"device_id"}`: a `device_signature` step with a fresh 256-bit nonce. An
    /// unknown or revoked device gets the same answer, and no signature will verify.
    pub(crate) async fn device_sign_in(&self, raw_id: &str, ctx: ClientContext) -> Result<FlowOutcome, AuthError> {
        let now = self.now();
        let id: DeviceId =
            raw_id.parse().map_err(|_| AuthError::InvalidRequest("device_id is not a device id".into()))?;
        let device = self.store.device(id).await?.filter(|d| d.revoked_at.is_none());
        let user = match &device {
            Some(d) => self.store.user_by_id(d.user_id).await?.filter(|u| u.status == UserStatus::Active),
            None => None,
        };
        // The risk policy: a refused device is asked to sign like an unknown one (its answer
        // then fails the same way), so the refusal is no oracle either.
        let risk = self.assess(user.as_ref(), Occasion::Device, &ctx, now).await?;
        self.risk_delay(&risk).await;
        let known = device.as_ref().filter(|_| user.is_some() && risk.action != RiskAction::Deny).map(|d| d.id);
        let state = FlowState::AwaitingDeviceSignature {
            device_id: known,
            nonce: random_token(self.rng.as_ref(), 32).expose().to_owned(),
            step_up: None,
        };
        let flow = self.new_flow(FlowId::new(), FlowKind::SignIn, user.map(|u| u.id), state, now, ctx.clone());
        let record = self.risk_record(&risk, Occasion::Device, flow.user_id, Some(flow.id), &ctx, now);
        let event = audit(
            now,
            flow.user_id,
            "sign_in",
            if known.is_some() { "device_challenge" } else { "unknown_device" },
            &ctx,
            serde_json::json!({"flow_id": flow.id, "device_id": id}),
        );
        let mut batch = Batch(record.into_iter().collect());
        batch.push(Write::InsertFlow(flow.clone())).push(event);
        self.apply(batch).await?;
        Ok(Self::outcome(flow, vec![StepEvent { step: "device_signature", outcome: "issued" }]))
    }

    /// `device_signature`: the biometric key's signature alone, or the possession key's with the
    /// right PIN. Counting, in order: the flow's attempts (every answer), then — only once the
    /// possession signature is right — the device's PIN failures; a blocked PIN answers a right
    /// PIN exactly like a wrong one (checklist RL-7).
    pub(crate) async fn device_signature(
        &self,
        flow: Flow,
        key: DeviceKey,
        signature: String,
        pin: Option<String>,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let FlowState::AwaitingDeviceSignature { device_id, nonce, step_up } = flow.state.clone() else {
            return Err(AuthError::StepMismatch { expected: flow.state.step_name() });
        };
        let step = "device_signature";
        let role = match key {
            DeviceKey::Biometric => KeyRole::Biometric,
            DeviceKey::Possession => KeyRole::Possession,
        };
        let pin = match (role, pin) {
            (KeyRole::Possession, None) => {
                return Err(AuthError::InvalidRequest("a possession-key signature needs the PIN".into()));
            }
            (_, pin) => pin.map(SecretString::new),
        };
        if role == KeyRole::Biometric && step_up.is_none() && self.hooks.policy(Hook::CustomAccessToken).is_none() {
            return self.biometric_sign_in_at_once(flow, device_id, &nonce, &signature, now, ctx).await;
        }
        let attempts = match self.reserve_attempt(&flow, step, None, OTP, now).await? {
            Ok(n) => n,
            Err(o) => return Ok(o),
        };
        let Some((device, user)) = self.signer_of(&flow, device_id).await? else {
            return self.refuse(&flow, step, attempts, false, now, &ctx).await;
        };
        let point = if role == KeyRole::Biometric { &device.biometric_key } else { &device.possession_key };
        let message = dk::signed_message(Purpose::SignIn, &flow.id.to_string(), &nonce, role, &device.id.to_string());
        if !dk::verify(point, message.as_bytes(), &signature) {
            return self.refuse(&flow, step, attempts, false, now, &ctx).await;
        }
        if let Some(pin) = &pin
            && role == KeyRole::Possession
        {
            let right = match self.store.reserve_pin_attempt(device.id, PIN_LIMIT).await? {
                // Blocked: the PIN is not checked, but a dummy hash keeps the time the same.
                None => {
                    let _ = self.hasher.verify(pin, None).await?;
                    false
                }
                Some(_) => self.hasher.verify(pin, Some(&device.pin_hash)).await?,
            };
            if !right {
                return self.refuse(&flow, step, attempts, false, now, &ctx).await;
            }
        }
        let amr = amr_of(role, &device);
        let mut batch = Batch::new();
        batch.push(Write::DeviceUsed { id: device.id, at: now, reset_pin: role == KeyRole::Possession });
        if let Some(su) = &step_up {
            // A step-up of this device's session: raised in place, and only to the level asked.
            let session = self.store.session(su.session_id).await?.ok_or(AuthError::Unauthenticated)?;
            if session.device_id != Some(device.id) {
                // Only the device a session is bound to steps it up by signing.
                return self.refuse(&flow, step, attempts, false, now, &ctx).await;
            }
            if !reaches(&session, amr, su, self.settings.mfa.require_phishing_resistant) {
                let mut o = self.refuse(&flow, step, attempts, false, now, &ctx).await?;
                if o.error.is_some() {
                    o.error = step_error(
                        codes::INSUFFICIENT_USER_AUTHENTICATION,
                        "this key alone does not give the level asked: sign with the possession key and the PIN",
                    );
                }
                return Ok(o);
            }
            let (next, tokens, _) =
                self.finish_step_up(&flow, &user, amr, Some(step), su, now, &ctx, &mut batch).await?;
            match self.apply(batch).await {
                Ok(()) => {}
                Err(StoreError::Conflict("device")) => {
                    return self.refuse(&flow, step, attempts, false, now, &ctx).await;
                }
                Err(StoreError::Conflict("flow")) => return Err(AuthError::FlowCompleted),
                Err(StoreError::Conflict("session")) => return Err(AuthError::Unauthenticated),
                Err(e) => return Err(e.into()),
            }
            return Ok(FlowOutcome::verified(next, tokens, step));
        }
        let (session, tokens) =
            self.sessions().new_session(flow.id, &user, amr, Some(&device), now, &ctx, &mut batch).await?;
        let done = device_signed_in(&flow, &user, &device, &session, amr, now, &ctx, &mut batch);
        match self.apply(batch).await {
            Ok(()) => {}
            // Revoked while this answer was in flight.
            Err(StoreError::Conflict("device")) => return self.refuse(&flow, step, attempts, false, now, &ctx).await,
            Err(StoreError::Conflict("flow")) => return Err(AuthError::FlowCompleted),
            Err(e) => return Err(e.into()),
        }
        Ok(FlowOutcome::verified(done, Some(tokens), step))
    }

    /// A biometric `device_signature` outside a step-up as one store write (issue 17), as
    /// `totp_sign_in_at_once` makes a TOTP step: the signature is checked first, and the sign-in's
    /// writes are applied in the transaction that counts the attempt, only if the count grants it
    /// — on SQLite one commit where it made two. A wrong signature, an unknown or revoked device,
    /// a blocked account: the attempt is counted and refused, as before. (No timing to hide here:
    /// a signature cannot be guessed.) With a `custom_access_token` hook the step takes
    /// `device_signature`'s own way, which asks the hook before anything is committed.
    async fn biometric_sign_in_at_once(
        &self,
        flow: Flow,
        device_id: Option<DeviceId>,
        nonce: &str,
        signature: &str,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let step = "device_signature";
        let role = KeyRole::Biometric;
        let signer = self.signer_of(&flow, device_id).await?.filter(|(device, _)| {
            let message =
                dk::signed_message(Purpose::SignIn, &flow.id.to_string(), nonce, role, &device.id.to_string());
            dk::verify(&device.biometric_key, message.as_bytes(), signature)
        });
        let Some((device, user)) = signer else {
            let attempts = match self.reserve_attempt(&flow, step, None, OTP, now).await? {
                Ok(n) => n,
                Err(o) => return Ok(o),
            };
            return self.refuse(&flow, step, attempts, false, now, &ctx).await;
        };
        let amr = amr_of(role, &device);
        let mut batch = Batch::new();
        batch.push(Write::DeviceUsed { id: device.id, at: now, reset_pin: false });
        let (session, refresh) =
            self.sessions().open_session(flow.id, &user, amr, Some(&device), now, &ctx, &mut batch);
        let done = device_signed_in(&flow, &user, &device, &session, amr, now, &ctx, &mut batch);
        let reserved = self.reserve_and_apply(flow.id, None, batch, true).await?;
        let attempts = match self.reserved(&flow, step, reserved.reservation).await? {
            Ok(n) => n,
            Err(o) => return Ok(o),
        };
        match reserved.applied {
            Some(Ok(())) => {}
            // Revoked while this answer was in flight.
            Some(Err(StoreError::Conflict("device"))) | None => {
                return self.refuse(&flow, step, attempts, false, now, &ctx).await;
            }
            Some(Err(StoreError::Conflict("flow"))) => return Err(AuthError::FlowCompleted),
            Some(Err(e)) => return Err(e.into()),
        }
        let tokens = self.sessions().tokens_for(&session, &user, refresh, now, "sign_in").await?;
        Ok(FlowOutcome::verified(done, Some(tokens), step))
    }

    /// The device a `device_signature` names and its account, if the device is not revoked, is the
    /// flow's account's, and that account is active.
    async fn signer_of(&self, flow: &Flow, device_id: Option<DeviceId>) -> Result<Option<(Device, User)>, AuthError> {
        let device = match device_id {
            Some(id) => {
                self.store.device(id).await?.filter(|d| d.revoked_at.is_none() && Some(d.user_id) == flow.user_id)
            }
            None => None,
        };
        let Some(device) = device else { return Ok(None) };
        let user = self.user_of(flow).await?.filter(|u| u.status == UserStatus::Active);
        Ok(user.map(|u| (device, u)))
    }

    /// `POST /v1/me/devices/{id}/biometric-key`: an `enroll` flow whose step is `rekey_biometric`.
    /// Only from that device, signed in with its PIN in the last 10 minutes: the biometric key
    /// is what the OS invalidated, so the PIN is what proves the user (DESIGN.md).
    pub async fn rekey_biometric(
        &self,
        p: &Principal,
        id: DeviceId,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        self.live_device_of(p, id).await?;
        let now = self.now();
        let max_age = self.settings.mfa.step_up_max_age_secs;
        let by_pin_here = p.session.device_id == Some(id) && p.session.amr.iter().any(|m| m == "pin");
        if !by_pin_here || now - p.session.auth_time > secs(max_age) {
            return Err(AuthError::InsufficientAuthentication { acr: "aal2", max_age });
        }
        let state = FlowState::AwaitingBiometricKey {
            device_id: id,
            nonce: random_token(self.rng.as_ref(), 32).expose().to_owned(),
        };
        self.start_enrollment(p, FlowId::new(), state, "biometric_key", vec![], now, &ctx).await
    }

    /// `rekey_biometric`: the new key signs the re-key message; then it replaces the old one, and
    /// the account's addresses are told.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn complete_rekey(
        &self,
        flow: Flow,
        device_id: DeviceId,
        nonce: String,
        new: NewBiometricKey,
        now: OffsetDateTime,
        ctx: ClientContext,
    ) -> Result<FlowOutcome, AuthError> {
        let step = "rekey_biometric";
        let user = self.user_of(&flow).await?.ok_or(AuthError::FlowExpired)?;
        let key =
            dk::parse_public_key(&new.key).map_err(|e| AuthError::InvalidRequest(format!("biometric_key: {e}")))?;
        let evidence = self.biometric_evidence(new.attestation.as_ref(), &key, &nonce, now)?;
        let attempts = match self.reserve_attempt(&flow, step, None, OTP, now).await? {
            Ok(n) => n,
            Err(o) => return Ok(o),
        };
        let device = self.store.device(device_id).await?.filter(|d| d.revoked_at.is_none() && d.user_id == user.id);
        let message = dk::signed_message(
            Purpose::Rekey,
            &flow.id.to_string(),
            &nonce,
            KeyRole::Biometric,
            &device_id.to_string(),
        );
        let Some(device) =
            device.filter(|d| d.possession_key != key && dk::verify(&key, message.as_bytes(), &new.signature))
        else {
            return self.refuse(&flow, step, attempts, false, now, &ctx).await;
        };
        let done = Flow { state: FlowState::Completed { session_id: None }, version: flow.version + 1, ..flow.clone() };
        let mut batch = Batch::new();
        batch
            .push(Write::UpdateDevice { id: device.id, biometric_key: Some((key, evidence)), pin_hash: None })
            .push(Write::UpdateFlow { flow: done.clone(), expected_version: flow.version })
            .push(audit(
                now,
                Some(user.id),
                "device_biometric_key_replaced",
                "success",
                &ctx,
                serde_json::json!({"flow_id": flow.id, "device_id": device.id}),
            ));
        let (subject, notice) =
            self.text(user.profile.locale.as_deref(), "biometric_replaced", &[("device", &device.name)]);
        for m in self.notification(&user, &subject, &notice, now)? {
            batch.push(Write::Enqueue(m));
        }
        match self.apply(batch).await {
            Ok(()) => {}
            Err(StoreError::Conflict("device")) => return self.refuse(&flow, step, attempts, false, now, &ctx).await,
            Err(StoreError::Conflict("flow")) => return Err(AuthError::FlowCompleted),
            Err(e) => return Err(e.into()),
        }
        Ok(Self::outcome(done, vec![StepEvent { step, outcome: "success" }]))
    }

    /// Checklist DEV-4: the evidence that the biometric key `point` needs a biometric for every
    /// use, from the app's attestation with this step's `nonce` as the challenge. None when the
    /// app sent none or no roots are configured; an attestation that does not verify is an error,
    /// so an app that builds its key wrongly hears why.
    fn biometric_evidence(
        &self,
        attestation: Option<&proto::DeviceAttestation>,
        point: &[u8],
        nonce: &str,
        now: OffsetDateTime,
    ) -> Result<Option<BiometricEvidence>, AuthError> {
        let Some(a) = attestation else { return Ok(None) };
        let pems = &self.settings.devices.android_attestation_roots;
        if pems.is_empty() {
            return Ok(None);
        }
        let bad = |m: &str| AuthError::InvalidAttestation(format!("attestation: {m}"));
        if a.format != "android_key" {
            return Err(bad("format must be android_key"));
        }
        if !matches!(a.biometric.as_str(), "fpt" | "face" | "iris") {
            return Err(bad("biometric must be fpt, face or iris"));
        }
        let chain = a
            .certificates
            .iter()
            .map(|c| dk::decode_base64(c).map_err(|_| bad("certificates must be Base64 DER")))
            .collect::<Result<Vec<_>, _>>()?;
        let roots = crate::factors::attestation::root_keys(pems).map_err(AuthError::Unavailable)?;
        let verdict = crate::factors::attestation::verify_android_key(&chain, &roots, point, nonce.as_bytes(), now)
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Some(BiometricEvidence {
            format: a.format.clone(),
            security_level: verdict.security_level.as_str().into(),
            modality: a.biometric.clone(),
        }))
    }

    /// One of the caller's devices that is not revoked, or `not_found`.
    pub(crate) async fn live_device_of(&self, p: &Principal, id: DeviceId) -> Result<Device, AuthError> {
        self.store
            .device(id)
            .await?
            .filter(|d| d.user_id == p.user.id && d.revoked_at.is_none())
            .ok_or(AuthError::NotFound)
    }
}

/// The `amr` a device's signature gives. Checklist DEV-4 and DESIGN.md "Assurance": a
/// biometric-key signature counts as a biometric factor only when an attestation showed that the
/// key needs a biometric for every use (`hwk` + `fpt`, `aal2`); otherwise it is something you have
/// (`hwk`, `aal1`). The possession key with the server-checked PIN is two factors: `hwk` + `pin`,
/// `aal2`.
fn amr_of(role: KeyRole, device: &Device) -> &'static [&'static str] {
    match (role, &device.biometric_evidence) {
        (KeyRole::Possession, _) => &["hwk", "pin"],
        (KeyRole::Biometric, None) => &["hwk"],
        (KeyRole::Biometric, Some(e)) => match e.modality.as_str() {
            "face" => &["hwk", "face"],
            "iris" => &["hwk", "iris"],
            _ => &["hwk", "fpt"],
        },
    }
}

/// A device sign-in's completion, pushed onto `batch` with its audit event: the flow moved on.
#[allow(clippy::too_many_arguments)] // the sign-in's facts, the batch it adds to: no natural grouping
fn device_signed_in(
    flow: &Flow,
    user: &User,
    device: &Device,
    session: &Session,
    amr: &[&str],
    now: OffsetDateTime,
    ctx: &ClientContext,
    batch: &mut Batch,
) -> Flow {
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
        ctx,
        serde_json::json!({"flow_id": flow.id, "session_id": session.id, "device_id": device.id, "amr": amr}),
    ));
    done
}

/// Whether user-chosen text can go into a notice as it is: no control characters (CR/LF forge
/// lines), no invisible or direction-changing ones (they hide or reorder text), no link or markup.
pub(crate) fn shown_safely(s: &str) -> bool {
    let invisible =
        |c: char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}');
    !s.chars().any(|c| c.is_control() || invisible(c) || c == '<' || c == '>') && !s.contains("://")
}
