//! Typed ids: a `UserId` can never be passed where a `FlowId` is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(/// A user.
    UserId);
id_type!(/// A flow (sign-up, sign-in, recovery…).
    FlowId);
id_type!(/// A session: one refresh-token family.
    SessionId);
id_type!(/// An outbox message.
    MessageId);
id_type!(/// A second factor.
    FactorId);
id_type!(/// An audit event.
    EventId);
id_type!(/// An enrolled device (its two keys and its app PIN).
    DeviceId);
id_type!(/// A push approval: one question to the account's enrolled devices.
    ApprovalId);
id_type!(/// A passkey (a WebAuthn credential).
    PasskeyId);
id_type!(/// A remembered client: a key that lets a password sign-in skip the second factor.
    RememberedClientId);
