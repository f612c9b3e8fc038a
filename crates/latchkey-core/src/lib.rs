//! The Latchkey domain: identities, flows as state machines, policy, assurance, secrets, and the
//! [`store::Store`] trait. It knows nothing of HTTP or SQL; time and randomness are injected.
#![warn(missing_docs)]

pub mod attestation;
pub mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod crypto;
pub mod device;
pub mod dpop;
pub mod error;
pub mod identity;
pub mod ids;
pub mod model;
pub mod password;
pub mod secret;
pub mod service;
pub mod settings;
pub mod store;
pub mod tokens;
pub mod totp;

pub use error::AuthError;
pub use latchkey_proto::MfaMethod;
pub use service::{Auth, AuthParts};
