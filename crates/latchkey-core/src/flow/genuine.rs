//! "Is this the operator's genuine app?" (`[policy.app_integrity]`, `docs/attestation.md`): the
//! single-use challenges an app asks its platform to vouch for, the check of the proof a request
//! carries (`Latchkey-App-Integrity`), and the gate the flows call before the actions the policy
//! names; registering an iOS app's App Attest key. Verifying a Play Integrity verdict is
//! `factors/app_integrity.rs`, an App Attest attestation or assertion `factors/app_attest.rs`.

use crate::auth::{Auth, secs};
use crate::error::AuthError;
use crate::factors::app_attest::{AttestedKey, verify_assertion, verify_attestation};
use crate::factors::app_integrity::{GatedAction, verify_play};
use crate::model::{AppAttestKey, ClientContext};
use crate::secret::{ct_eq, random_bytes};
use crate::store::{Batch, StoreError, Write};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;

/// A verdict older than this is refused, whatever its challenge says.
const MAX_VERDICT_AGE_SECS: i64 = 600;

impl Auth {
    /// `POST /v1/app-integrity/challenge`: a challenge (Base64url, web-safe as Play Integrity's
    /// `nonce` must be) that expires in `challenge_ttl_secs` and works once. It is its own proof
    /// of origin (random bytes, expiry, and a MAC under the pepper), so nothing is stored until it
    /// is used.
    pub fn app_integrity_challenge(&self) -> (String, OffsetDateTime) {
        let expires_at = self.now() + secs(self.settings.app_integrity.challenge_ttl_secs);
        let mut data = random_bytes(self.rng.as_ref(), 16);
        data.extend_from_slice(&expires_at.unix_timestamp().to_be_bytes());
        let data = URL_SAFE_NO_PAD.encode(data);
        let mac = self.keys.mac("app_integrity", "", &data);
        (format!("{data}{mac}"), expires_at)
    }

    /// Check the proof a request carries once per request: `play <token>` (the verdict, then its
    /// challenge) or `apple <key id> <assertion> <challenge>` (the challenge, then the assertion
    /// by a registered key, whose counter moves). The challenge is spent. `Err`: why it is refused.
    pub async fn verify_app_integrity(&self, proof: &str) -> Result<(), String> {
        let now = self.now();
        let challenge = if let Some(token) = proof.strip_prefix("play ") {
            let play = self.settings.app_integrity.play.as_ref().ok_or("no Play Integrity verifier is configured")?;
            let verdict = verify_play(play, token)?;
            let age = now.unix_timestamp() - verdict.requested_at_ms / 1000;
            if !(-60..=MAX_VERDICT_AGE_SECS).contains(&age) {
                return Err("the verdict is too old".into());
            }
            verdict.nonce
        } else if let Some(rest) = proof.strip_prefix("apple ") {
            let [key_id, assertion, challenge] = rest.split(' ').collect::<Vec<_>>()[..] else {
                return Err("the proof must be `apple <key id> <assertion> <challenge>`".into());
            };
            self.check_challenge(challenge, now)?;
            self.app_attest_assertion(key_id, assertion, challenge, now).await?;
            challenge.to_owned()
        } else {
            return Err("the proof must be `play <token>` or `apple <key id> <assertion> <challenge>`".into());
        };
        self.spend_challenge(&challenge, now).await
    }

    /// Check `challenge` and record it used.
    async fn spend_challenge(&self, challenge: &str, now: OffsetDateTime) -> Result<(), String> {
        let expires_at = self.check_challenge(challenge, now)?;
        match self.store.use_dpop_proof(&format!("app_integrity:{challenge}"), expires_at).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the challenge was used already".into()),
            Err(e) => Err(format!("the challenge could not be recorded: {e}")),
        }
    }

    async fn app_attest_assertion(
        &self,
        key_id: &str,
        assertion: &str,
        challenge: &str,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        let apple = self.settings.app_integrity.apple.as_ref().ok_or("no App Attest verifier is configured")?;
        let (id, _) = key_id_of(key_id).ok_or("the key id is not Base64 of 32 bytes")?;
        let stored = self.store.app_attest_key(&id).await.map_err(|e| e.to_string())?;
        let stored = stored.ok_or("this App Attest key is not registered (POST /v1/app-integrity/apple/keys)")?;
        let key = AttestedKey { point: stored.public_key.clone(), app_id: stored.app_id.clone() };
        let assertion = b64_any(assertion).ok_or("the assertion is not Base64")?;
        let counter = verify_assertion(apple, &key, stored.counter, &assertion, challenge.as_bytes())?;
        let used = Write::AppAttestKeyUsed { key_id: id, seen: stored.counter, counter, at: now };
        match self.store.apply(Batch(vec![used])).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(_)) => Err("the assertion's counter did not grow (a replay)".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// `POST /v1/app-integrity/apple/keys`: register an iOS app instance's App Attest key from
    /// its attestation over a challenge of this server (spent). `400 invalid_attestation` says why
    /// it was refused.
    pub async fn register_app_attest_key(
        &self,
        key_id: &str,
        attestation: &str,
        challenge: &str,
    ) -> Result<(), AuthError> {
        let now = self.now();
        let apple = self.settings.app_integrity.apple.as_ref().ok_or(AuthError::NotFound)?;
        let refused = AuthError::InvalidAttestation;
        let (id, raw_id) = key_id_of(key_id).ok_or_else(|| refused("key_id: Base64 of 32 bytes".into()))?;
        let object = b64_any(attestation).ok_or_else(|| refused("attestation: Base64".into()))?;
        self.check_challenge(challenge, now).map_err(refused)?;
        let key = verify_attestation(apple, &raw_id, &object, challenge.as_bytes(), now).map_err(refused)?;
        self.spend_challenge(challenge, now).await.map_err(refused)?;
        let row = AppAttestKey {
            key_id: id,
            app_id: key.app_id,
            public_key: key.point,
            counter: 0,
            created_at: now,
            last_used_at: None,
        };
        match self.apply(Batch(vec![Write::InsertAppAttestKey(row)])).await {
            Err(StoreError::Conflict(_)) => Err(AuthError::InvalidAttestation("this key is registered already".into())),
            other => Ok(other?),
        }
    }

    fn check_challenge(&self, challenge: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
        let refused = || "the verdict's nonce is not a challenge of this server".to_owned();
        let (data, mac) = (challenge.get(..32).ok_or_else(refused)?, challenge.get(32..).ok_or_else(refused)?);
        if !ct_eq(mac.as_bytes(), self.keys.mac("app_integrity", "", data).as_bytes()) {
            return Err(refused());
        }
        let bytes = URL_SAFE_NO_PAD.decode(data).map_err(|_| refused())?;
        let at = i64::from_be_bytes(bytes.get(16..24).and_then(|b| b.try_into().ok()).ok_or_else(refused)?);
        let expires_at = OffsetDateTime::from_unix_timestamp(at).map_err(|_| refused())?;
        if expires_at <= now {
            return Err("the challenge expired: ask for a new one".into());
        }
        Ok(expires_at)
    }

    /// The gate before `action`: when the policy requires a genuine app for it, the request's
    /// proof must have passed (`403 app_integrity_required` otherwise, saying why).
    pub(crate) fn require_genuine_app(&self, action: GatedAction, ctx: &ClientContext) -> Result<(), AuthError> {
        if !self.settings.app_integrity.require.contains(&action) {
            return Ok(());
        }
        metrics::counter!("latchkey_app_integrity_checks_total", "action" => action.as_str(),
            "outcome" => match &ctx.app_integrity { Some(Ok(())) => "genuine", Some(Err(_)) => "refused", None => "missing" })
        .increment(1);
        match &ctx.app_integrity {
            Some(Ok(())) => Ok(()),
            Some(Err(why)) => Err(AuthError::AppIntegrityRequired(format!("{}: {why}", action.as_str()))),
            None => Err(AuthError::AppIntegrityRequired(format!(
                "{}: this request needs a Latchkey-App-Integrity header (docs/attestation.md)",
                action.as_str()
            ))),
        }
    }
}

/// Base64, standard or URL-safe, with or without padding.
fn b64_any(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let t = s.trim();
    let padded = format!("{t}{}", "=".repeat((4 - t.len() % 4) % 4));
    STANDARD.decode(&padded).ok().or_else(|| URL_SAFE.decode(&padded).ok())
}

/// An App Attest key id as stored (standard Base64 of its 32 bytes), and the bytes.
fn key_id_of(s: &str) -> Option<(String, Vec<u8>)> {
    b64_any(s).filter(|b| b.len() == 32).map(|b| (base64::engine::general_purpose::STANDARD.encode(&b), b))
}
