//! The Latchkey wire contract: what apps send and what the server answers.
//!
//! Every flow request (`POST /v1/sign-up`, `POST /v1/sign-in`, `POST /v1/flows/{id}`, …) is answered
//! with a [`FlowAnswer`]: the flow id, its expiry, and the [`NextStep`] the app must render. Tokens
//! appear only when the next step is [`NextStep::Done`]. A wrong answer is not an HTTP error: the flow
//! answers with the same step, fewer `attempts_left` and a [`StepError`] the app can branch on.
//!
//! This crate depends on serde only, so a mobile SDK can compile it for iOS and Android.
//!
//! ```
//! use latchkey_proto::{FlowAnswer, NextStep};
//! let json = r#"{"flow_id":"0193","expires_at":"2026-11-22T10:05:00Z",
//!   "next_step":{"type":"confirm_sign_up","channel":"email","destination":"a***@e***.com","attempts_left":5},
//!   "tokens":null}"#;
//! let answer: FlowAnswer = serde_json::from_str(json).unwrap();
//! assert!(matches!(answer.next_step, NextStep::ConfirmSignUp { .. }));
//! ```
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

mod account;
mod action;
mod admin;
mod device;
mod error;
mod flow;
mod recovery;
mod session;

pub use account::*;
pub use action::*;
pub use admin::*;
pub use device::*;
pub use error::*;
pub use flow::*;
pub use recovery::*;
pub use session::*;
