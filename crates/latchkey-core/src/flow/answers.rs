//! What a flow looks like on the wire: the next step a flow record shows the app, with what it
//! may reveal (masked destinations, attempts left) and nothing it may not.

use crate::auth::{Auth, FlowOutcome, StepEvent};
use crate::clock::rfc3339;
use crate::error::AuthError;
use crate::factors::totp::totp_enrolment;
use crate::model::*;
use latchkey_proto as proto;
use latchkey_proto::MfaMethod;

impl Auth {
    /// The wire answer for a flow outcome.
    pub fn answer(&self, o: &FlowOutcome) -> Result<proto::FlowAnswer, AuthError> {
        let attempts_left = self.settings.flows.max_attempts.saturating_sub(o.flow.attempts);
        let next_step = match &o.flow.state {
            FlowState::AwaitingConfirmation { code, .. } => proto::NextStep::ConfirmSignUp {
                channel: code.channel,
                destination: code.destination.clone(),
                attempts_left,
            },
            FlowState::AwaitingNewPassword { .. } => proto::NextStep::NewPassword { attempts_left },
            FlowState::AwaitingTotpSetup { factor_id, account, secret_sealed } => {
                let secret = self.keys.open(&factor_id.to_string(), secret_sealed)?;
                let enrolment = totp_enrolment(&self.settings.product_name, account, &secret)
                    .map_err(|e| AuthError::Internal(e.to_string()))?;
                let mfa = &self.settings.mfa;
                let sms = o.flow.kind == FlowKind::SignIn && mfa.allow_sms_setup && mfa.allows(MfaMethod::Sms);
                proto::NextStep::SetupTotp {
                    secret: enrolment.secret,
                    uri: enrolment.uri,
                    qr_svg: enrolment.qr_svg,
                    attempts_left,
                    other_methods: if sms { vec![MfaMethod::Sms] } else { vec![] },
                }
            }
            FlowState::AwaitingMfa { method, methods, code, push, custom, passkey, .. } => {
                let other_methods: Vec<MfaMethod> = methods.iter().copied().filter(|m| Some(*m) != *method).collect();
                let destination = code.as_ref().map(|c| c.destination.clone()).unwrap_or_default();
                match method {
                    None => proto::NextStep::SelectMfa { methods: methods.clone() },
                    Some(MfaMethod::Sms) => proto::NextStep::SmsCode { destination, attempts_left, other_methods },
                    Some(MfaMethod::Email) => proto::NextStep::EmailCode { destination, attempts_left, other_methods },
                    Some(MfaMethod::RecoveryCode) => proto::NextStep::RecoveryCode { attempts_left, other_methods },
                    Some(MfaMethod::PushApproval) => match push {
                        Some(p) => proto::NextStep::PushApproval {
                            approval_id: p.approval_id.to_string(),
                            number: p.number.clone(),
                            expires_at: rfc3339(p.expires_at),
                            other_methods,
                        },
                        None => proto::NextStep::SelectMfa { methods: methods.clone() },
                    },
                    Some(MfaMethod::CustomChallenge) => match custom {
                        Some(c) => proto::NextStep::CustomChallenge {
                            parameters: c.parameters.clone(),
                            expires_at: rfc3339(c.expires_at),
                            attempts_left,
                            other_methods,
                        },
                        None => proto::NextStep::SelectMfa { methods: methods.clone() },
                    },
                    Some(MfaMethod::Passkey) => match passkey {
                        Some(c) => passkey_step(c, attempts_left, other_methods),
                        None => proto::NextStep::SelectMfa { methods: methods.clone() },
                    },
                    Some(_) => proto::NextStep::TotpCode { attempts_left, other_methods },
                }
            }
            FlowState::AwaitingPasskeyRegistration { challenge } | FlowState::AwaitingPasskeySignIn { challenge } => {
                passkey_step(challenge, attempts_left, vec![])
            }
            FlowState::AwaitingDeviceEnrollment { device_id, nonce, .. } => {
                proto::NextStep::EnrollDevice { device_id: device_id.to_string(), nonce: nonce.clone(), attempts_left }
            }
            FlowState::AwaitingRememberedClient { nonce, .. } => {
                proto::NextStep::RememberedClient { nonce: nonce.clone() }
            }
            FlowState::AwaitingDeviceSignature { nonce, .. } => {
                proto::NextStep::DeviceSignature { nonce: nonce.clone(), attempts_left }
            }
            FlowState::AwaitingBiometricKey { device_id, nonce } => proto::NextStep::RekeyBiometric {
                device_id: device_id.to_string(),
                nonce: nonce.clone(),
                attempts_left,
            },
            FlowState::AwaitingRecoveryCodesSaved { codes_sealed } => {
                proto::NextStep::SaveRecoveryCodes { codes: self.sealed_recovery_codes(&o.flow, codes_sealed)? }
            }
            FlowState::AwaitingVerification { channel, code, .. } => {
                proto::NextStep::VerifyCode { channel: *channel, destination: code.destination.clone(), attempts_left }
            }
            FlowState::AwaitingReset { code } => {
                let reveal = self.settings.sign_up.reveal_username_exists;
                proto::NextStep::ResetPassword {
                    channel: if reveal { code.as_ref().map(|c| c.channel) } else { None },
                    destination: if reveal {
                        code.as_ref().map(|c| c.destination.clone()).unwrap_or_default()
                    } else {
                        String::new()
                    },
                    attempts_left,
                }
            }
            FlowState::AwaitingRecoveryWait { ready_at, .. } => {
                proto::NextStep::RecoveryWait { ready_at: rfc3339(*ready_at) }
            }
            FlowState::Completed { .. } => proto::NextStep::Done,
            FlowState::Denied { reason } => proto::NextStep::Denied { reason: *reason },
        };
        Ok(proto::FlowAnswer {
            flow_id: o.flow.id.to_string(),
            expires_at: rfc3339(o.flow.expires_at),
            next_step,
            tokens: o.tokens.clone(),
            error: o.error.clone(),
            approval: o.approval.clone(),
        })
    }

    pub(crate) fn outcome(flow: Flow, events: Vec<StepEvent>) -> FlowOutcome {
        FlowOutcome { flow, tokens: None, error: None, events, approval: None }
    }
}

fn passkey_step(c: &PasskeyChallenge, attempts_left: u32, other_methods: Vec<MfaMethod>) -> proto::NextStep {
    proto::NextStep::Passkey { ceremony: c.ceremony.clone(), options: c.options.clone(), attempts_left, other_methods }
}
