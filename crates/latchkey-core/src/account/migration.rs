//! Lazy migration (`user_migration`; issue 15, item 2), as Cognito's migrate-user trigger does
//! it: a sign-in or a recovery for a username Latchkey does not know asks the old system, which
//! checks the password (at sign-in) and answers the account in the shape of an import line. The
//! account is created then and the request goes on as if it had always been here.
//!
//! What the client sees does not change: a username the old system does not know either, a
//! wrong password, and a hook that cannot be asked all answer as a wrong password does (a
//! failed call counts on `latchkey_hook_failures_total`), so the hook is no oracle for which
//! accounts exist or have moved.

use super::ImportRow;
use crate::auth::Auth;
use crate::error::AuthError;
use crate::hooks::{self, Hook};
use crate::model::*;
use crate::secret::SecretString;
use crate::store::{Batch, StoreError, Write};
use serde_json::{Value, json};

/// Read the old system's answer: `{"user": {…import line without username…}}` for an account it
/// knows (and whose password was right, at sign-in), `{"user": null}` otherwise.
fn read_migrated(answer: &Value, username: &str) -> Result<Option<ImportRow>, String> {
    let obj = answer.as_object().ok_or("the answer is not a JSON object")?;
    if let Some(k) = obj.keys().find(|k| k.as_str() != "user") {
        return Err(format!("unknown field {k:?}"));
    }
    let mut user = match obj.get("user") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(u)) => u.clone(),
        Some(_) => return Err("user: an object or null".into()),
    };
    if user.contains_key("username") {
        return Err("user.username: leave it out (the account gets the username asked about)".into());
    }
    user.insert("username".into(), Value::String(username.to_owned()));
    serde_json::from_value(Value::Object(user)).map(Some).map_err(|e| format!("user: {e}"))
}

impl Auth {
    /// Ask the old system about `username` (`trigger`: `sign_in`, with the password it is to
    /// check — as typed, and as Latchkey normalises it for its own hash — or `recovery`,
    /// without), and create the account it answers. `None`: not configured, not known there, or
    /// the call failed (the request then answers as for an unknown username).
    pub(crate) async fn migrate_user(
        &self,
        username: &str,
        password: Option<(&str, &SecretString)>,
        trigger: &str,
        ctx: &ClientContext,
    ) -> Result<Option<User>, AuthError> {
        if self.hooks.policy(Hook::UserMigration).is_none() {
            return Ok(None);
        }
        let body = json!({
            "hook": Hook::UserMigration.as_str(),
            "trigger": trigger,
            "username": username,
            "password": password.map(|(typed, _)| typed),
            "ip": ctx.ip,
            "user_agent": ctx.user_agent,
        });
        let row = match self.hooks.call(Hook::UserMigration, body).await.and_then(|v| read_migrated(&v, username)) {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(None),
            Err(why) => {
                // Fail closed, and look like an unknown username.
                let _ = hooks::failed(Hook::UserMigration, &why);
                return Ok(None);
            }
        };
        let now = self.now();
        // The old system's hash is not needed: the password it just accepted is hashed here.
        let native = match password {
            Some((_, normalized)) => Some(self.hasher.hash(normalized).await?),
            None => None,
        };
        let mut ready = match self.admin().check_row(row, now, "user_migrated", ctx) {
            Ok(r) => r,
            Err(why) => {
                let _ = hooks::failed(Hook::UserMigration, &why);
                return Ok(None);
            }
        };
        if native.is_some() {
            for w in &mut ready.writes {
                if let Write::InsertUser(u) = w {
                    u.password_hash.clone_from(&native);
                }
            }
            ready.user.password_hash = native;
        }
        match self.apply(Batch(ready.writes)).await {
            Ok(()) => Ok(Some(ready.user)),
            // Another request migrated this account first (or its username rests after a
            // deletion): use what is there.
            Err(StoreError::Conflict(_)) => Ok(self.store.user_by_username(&ready.canonical).await?),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_system_answers_an_import_line_or_null() {
        let row = read_migrated(&json!({"user": {"email": "a@example.com", "email_verified": true}}), "ana").unwrap();
        let row = row.unwrap();
        assert_eq!(
            (row.username.as_str(), row.email.as_deref(), row.email_verified),
            ("ana", Some("a@example.com"), true)
        );
        assert!(read_migrated(&json!({"user": null}), "ana").unwrap().is_none());
        assert!(read_migrated(&json!({}), "ana").unwrap().is_none());
        for bad in [
            json!({"user": {"username": "other"}}),
            json!({"user": {"unknown_field": 1}}),
            json!({"user": "ana"}),
            json!({"found": true}),
        ] {
            assert!(read_migrated(&bad, "ana").is_err(), "{bad}");
        }
    }
}
