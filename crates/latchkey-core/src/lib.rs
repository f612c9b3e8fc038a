//! The Latchkey domain: identities, flows as state machines, policy, assurance, secrets, and the
//! [`store::Store`] trait. It knows nothing of HTTP or SQL; time and randomness are injected.
#![warn(missing_docs)]

pub mod account;
pub mod attributes;
pub mod auth;
pub mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod crypto;
pub mod dpop;
pub mod error;
pub mod events;
pub mod factors;
pub mod flow;
mod flows;
pub mod hooks;
pub mod identity;
pub mod ids;
pub mod introspection;
pub mod messages;
pub mod model;
mod push_waits;
pub mod risk;
pub mod secret;
pub mod sessions;
pub mod settings;
pub mod store;
pub mod subscriptions;
pub mod tokens;

pub use auth::{Auth, AuthParts};
pub use error::AuthError;
pub use flows::{DeviceEnrollment, NewBiometricKey};
pub use latchkey_proto::MfaMethod;
