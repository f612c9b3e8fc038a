//! "Is this the operator's genuine app?" (`[policy.app_integrity]`, `docs/attestation.md`): the
//! single-use challenges an app asks its platform to vouch for, the check of the proof a request
//! carries (`Latchkey-App-Integrity`), and the gate the flows call before the actions the policy
//! names. Verifying a Play Integrity verdict is `factors/app_integrity.rs`.

use crate::auth::{Auth, secs};
use crate::error::AuthError;
use crate::factors::app_integrity::{GatedAction, verify_play};
use crate::model::ClientContext;
use crate::secret::{ct_eq, random_bytes};
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

    /// Check the proof a request carries (`play <token>`) once per request: the verdict, then
    /// its challenge (ours, unexpired, and spent now). `Err`: why it is refused.
    pub async fn verify_app_integrity(&self, proof: &str) -> Result<(), String> {
        let now = self.now();
        let Some(play) = self.settings.app_integrity.play.as_ref() else {
            return Err("no app integrity verifier is configured".into());
        };
        let token = proof.strip_prefix("play ").ok_or("the proof must be `play <token>`")?;
        let verdict = verify_play(play, token)?;
        let age = now.unix_timestamp() - verdict.requested_at_ms / 1000;
        if !(-60..=MAX_VERDICT_AGE_SECS).contains(&age) {
            return Err("the verdict is too old".into());
        }
        let expires_at = self.check_challenge(&verdict.nonce, now)?;
        match self.store.use_dpop_proof(&format!("app_integrity:{}", verdict.nonce), expires_at).await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the challenge was used already".into()),
            Err(e) => Err(format!("the challenge could not be recorded: {e}")),
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
