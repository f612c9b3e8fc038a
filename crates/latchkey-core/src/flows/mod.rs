//! The flows, one file each, and the table a reader starts from: `submit` matches the flow's
//! state with the app's answer and hands the pair to the flow that owns it. The states
//! themselves are `model::flow`; the step mechanics the flows share are `flow`.

use crate::auth::{Auth, FlowOutcome};
use crate::error::AuthError;
use crate::factors::password::normalize;
use crate::flow::expired;
use crate::flows::sign_up::AfterConfirm;
use crate::ids::FlowId;
use crate::model::*;
use crate::secret::SecretString;
use latchkey_proto::{MfaMethod, StepAnswer};

pub(crate) mod custom_challenge;
pub(crate) mod device;
pub(crate) mod enroll;
pub(crate) mod hooked;
pub(crate) mod passkey;
pub(crate) mod push;
pub(crate) mod recovery;
pub(crate) mod remembered;
pub(crate) mod second_factor;
pub(crate) mod sign_in;
pub(crate) mod sign_up;
pub(crate) mod step_up;
pub(crate) mod undo;
pub(crate) mod verification;

pub use device::{DeviceEnrollment, NewBiometricKey};

impl Auth {
    /// `POST /v1/flows/{id}`: answer the step the flow waits for.
    pub async fn submit(&self, id: FlowId, answer: StepAnswer, ctx: ClientContext) -> Result<FlowOutcome, AuthError> {
        let flow = self.load_flow(id, &ctx).await?;
        let now = self.now();
        match &flow.state {
            FlowState::Completed { .. } => return Err(AuthError::FlowCompleted),
            FlowState::Denied { .. } => return Ok(Self::outcome(flow, vec![])),
            s if flow.expires_at <= now => return Err(expired(s)),
            _ => {}
        }
        match (flow.state.clone(), answer) {
            (
                FlowState::AwaitingConfirmation { code, sign_in_after, then_enroll_device, invited },
                StepAnswer::ConfirmSignUp { code: given },
            ) => {
                let then = match (then_enroll_device, invited) {
                    (true, _) => AfterConfirm::EnrollDevice,
                    (false, true) => AfterConfirm::SetPassword,
                    (false, false) => AfterConfirm::SignIn(sign_in_after),
                };
                self.confirm_sign_up(flow, code, then, SecretString::new(given), now, ctx).await
            }
            (FlowState::AwaitingNewPassword { recovery: Some(rec), .. }, StepAnswer::NewPassword { password }) => {
                self.recovery_new_password(flow, rec, normalize(&password), now, ctx).await
            }
            (FlowState::AwaitingNewPassword { amr, .. }, StepAnswer::NewPassword { password }) => {
                self.set_new_password(flow, amr, normalize(&password), now, ctx).await
            }
            (FlowState::AwaitingRecoveryWait { .. }, StepAnswer::RecoveryWait {}) => {
                self.recovery_wait(flow, now, ctx).await
            }
            (
                FlowState::AwaitingMfa { methods, recovery: Some(_), .. },
                StepAnswer::SelectMfa { method: MfaMethod::RecoveryWait },
            ) if methods.contains(&MfaMethod::RecoveryWait) => self.choose_wait(flow, now, ctx).await,
            (FlowState::AwaitingTotpSetup { factor_id, .. }, StepAnswer::SetupTotp { code }) => {
                self.confirm_totp_setup(flow, factor_id, SecretString::new(code), now, ctx).await
            }
            (FlowState::AwaitingTotpSetup { factor_id, .. }, StepAnswer::SetupSms { phone }) => {
                self.setup_sms(flow, factor_id, phone, now, ctx).await
            }
            (FlowState::AwaitingMfa { methods, then_new_password, .. }, StepAnswer::SelectMfa { method }) => {
                self.select_mfa(flow, methods, then_new_password, method, now, ctx).await
            }
            (
                FlowState::AwaitingMfa { method: Some(MfaMethod::Totp), then_new_password, .. },
                StepAnswer::TotpCode { code },
            ) => self.totp_sign_in(flow, then_new_password, SecretString::new(code), now, ctx).await,
            (
                FlowState::AwaitingMfa { method: Some(MfaMethod::CustomChallenge), then_new_password, .. },
                StepAnswer::CustomChallenge { answer },
            ) => self.custom_sign_in(flow, then_new_password, answer, now, ctx).await,
            (FlowState::AwaitingMfa { method: Some(MfaMethod::PushApproval), .. }, StepAnswer::PushApproval {}) => {
                self.settle_push(flow, &ctx).await
            }
            (FlowState::AwaitingMfa { method: Some(MfaMethod::Sms), .. }, StepAnswer::SmsCode { code })
            | (FlowState::AwaitingMfa { method: Some(MfaMethod::Email), .. }, StepAnswer::EmailCode { code }) => {
                self.oob_sign_in(flow, SecretString::new(code), now, ctx).await
            }
            (
                FlowState::AwaitingMfa { method: Some(MfaMethod::RecoveryCode), then_new_password, .. },
                StepAnswer::RecoveryCode { code },
            ) => self.recovery_sign_in(flow, then_new_password, SecretString::new(code), now, ctx).await,
            (
                FlowState::AwaitingDeviceEnrollment { .. },
                StepAnswer::EnrollDevice {
                    name,
                    platform,
                    possession_key,
                    biometric_key,
                    possession_signature,
                    biometric_signature,
                    pin,
                    attestation,
                },
            ) => {
                let e = DeviceEnrollment {
                    name,
                    platform,
                    possession_key,
                    biometric_key,
                    possession_signature,
                    biometric_signature,
                    pin: SecretString::new(pin),
                    attestation,
                };
                self.complete_device_enrollment(flow, e, now, ctx).await
            }
            (FlowState::AwaitingRememberedClient { .. }, StepAnswer::RememberedClient { signature }) => {
                self.remembered_sign_in(flow, signature, now, ctx).await
            }
            (FlowState::AwaitingDeviceSignature { .. }, StepAnswer::DeviceSignature { key, signature, pin }) => {
                self.device_signature(flow, key, signature, pin, now, ctx).await
            }
            (
                FlowState::AwaitingBiometricKey { device_id, nonce },
                StepAnswer::RekeyBiometric { biometric_key, biometric_signature, attestation },
            ) => {
                let key = NewBiometricKey { key: biometric_key, signature: biometric_signature, attestation };
                self.complete_rekey(flow, device_id, nonce, key, now, ctx).await
            }
            (FlowState::AwaitingRecoveryCodesSaved { codes_sealed }, StepAnswer::SaveRecoveryCodes {}) => {
                self.save_recovery_codes(flow, codes_sealed, now, ctx).await
            }
            (FlowState::AwaitingVerification { .. }, StepAnswer::VerifyCode { code }) => {
                self.verify_destination(flow, SecretString::new(code), now, ctx).await
            }
            (
                FlowState::AwaitingPasskeyRegistration { .. }
                | FlowState::AwaitingPasskeySignIn { .. }
                | FlowState::AwaitingMfa { method: Some(MfaMethod::Passkey), .. },
                StepAnswer::Passkey { credential, name },
            ) => self.passkey_answer(flow, credential, name, now, ctx).await,
            (FlowState::AwaitingReset { code }, StepAnswer::ResetPassword { code: given, password }) => {
                self.reset_password(flow, code, SecretString::new(given), normalize(&password), now, ctx).await
            }
            (state, _) => Err(AuthError::StepMismatch { expected: state.step_name() }),
        }
    }
}
