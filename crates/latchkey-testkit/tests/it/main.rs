//! End-to-end tests: a real server on 127.0.0.1:0 with a fake clock, driven over HTTP through
//! the SDK, on SQLite and (with LATCHKEY_TEST_DATABASE_URL) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// Runs each named `async fn(Backend)` as one test per store.
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let _machine = latchkey_testkit::shared_machine().await;
                    super::$name(latchkey_testkit::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if latchkey_testkit::Backend::Postgres.available() {
                        let _machine = latchkey_testkit::shared_machine().await;
                        super::$name(latchkey_testkit::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}

/// As `both_stores!`, each test alone in the process (`exclusive_machine`): for tests that read
/// process-wide metrics, which another test's flows would move.
macro_rules! both_stores_alone {
    ($($name:ident),* $(,)?) => {
        mod alone {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $name() {
                        let _alone = latchkey_testkit::exclusive_machine().await;
                        super::super::$name(latchkey_testkit::Backend::Sqlite).await
                    }
                )*
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $name() {
                        if latchkey_testkit::Backend::Postgres.available() {
                            let _alone = latchkey_testkit::exclusive_machine().await;
                            super::super::$name(latchkey_testkit::Backend::Postgres).await
                        }
                    }
                )*
            }
        }
    };
}

mod account;
mod actions;
mod admin;
mod app_integrity;
mod attested_passkeys;
mod deletion;
mod delivery;
mod devices;
mod flows;
mod hooks;
mod introspection;
mod mfa;
mod ops;
mod outbox;
mod passkeys;
mod push;
mod recovery;
mod remembered;
mod risk;
mod security;
mod step_up;
mod tokens;
mod totp;
mod transport;
mod vectors;
mod webhooks;
