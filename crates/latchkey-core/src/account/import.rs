//! Bringing accounts from another system (issue 15, item 3): `latchkey import FILE` reads JSON
//! Lines and hands them here a batch at a time (`auth.admin().import`).
//!
//! Each row is checked as sign-up checks an account (username, email, phone, locale, declared
//! attributes), its TOTP secret sealed as a native one, and its password hash kept in its own
//! scheme (`factors::legacy`) until the user's next sign-in upgrades it. A batch is one
//! transaction; a row that is refused or already there changes nothing, and the rest of its
//! batch is written. Importing the same file again imports nothing twice, so a killed import is
//! resumed by running it again.

use super::admin::Admin;
use crate::auth::audit;
use crate::factors::legacy::{Legacy, stored};
use crate::factors::{ACTIVE, TOTP};
use crate::identity::{Email, Phone, Username};
use crate::ids::{FactorId, UserId};
use crate::model::{ClientContext, Factor, Profile, User, UserStatus};
use crate::store::{Batch, StoreError, Write};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};

/// One line of an import file (names relied on by migration tools: a contract).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRow {
    /// The username, as sign-up accepts it.
    pub username: String,
    /// The email address.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether the old system verified it.
    #[serde(default)]
    pub email_verified: bool,
    /// The phone number (E.164).
    #[serde(default)]
    pub phone: Option<String>,
    /// Whether the old system verified it.
    #[serde(default)]
    pub phone_verified: bool,
    /// Values of attributes declared in `[[policy.attributes]]`.
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// An authenticator app's secret (Base32), enrolled as an active TOTP factor.
    #[serde(default)]
    pub totp_secret: Option<String>,
    /// The password hash as the old system wrote it (`factors::legacy` lists the formats).
    #[serde(default)]
    pub password_hash: Option<String>,
    /// The display name.
    #[serde(default)]
    pub name: Option<String>,
    /// The preferred language (BCP 47).
    #[serde(default)]
    pub locale: Option<String>,
}

impl std::fmt::Debug for ImportRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportRow").field("username", &self.username).finish_non_exhaustive()
    }
}

/// What became of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// Written (or, in a dry run, would be).
    Created,
    /// The username is taken already: by an earlier import of the same row, or anyone.
    Exists,
    /// Refused, and why (never a hash or a secret).
    Rejected(String),
}

/// A checked row: the account and its writes, ready for a batch.
pub(crate) struct Ready {
    pub canonical: String,
    pub user: User,
    pub writes: Vec<Write>,
}

/// Base32 as authenticator apps show it (any case, spaces, optional padding).
fn totp_key(s: &str) -> Result<Vec<u8>, String> {
    let cleaned: String = s.chars().filter(|c| !c.is_whitespace() && *c != '=' && *c != '-').collect();
    let key = data_encoding::BASE32_NOPAD
        .decode(cleaned.to_uppercase().as_bytes())
        .map_err(|_| "totp_secret: not Base32".to_owned())?;
    if !(10..=64).contains(&key.len()) {
        return Err("totp_secret: 80 to 512 bits".into());
    }
    Ok(key)
}

impl Admin<'_> {
    /// Import a batch of rows (`Err` holds why a line could not be read). With `dry_run`,
    /// everything is checked and nothing written.
    pub async fn import(
        &self,
        rows: Vec<Result<ImportRow, String>>,
        dry_run: bool,
    ) -> Result<Vec<Imported>, crate::AuthError> {
        let now = self.auth.now();
        let mut out: Vec<Imported> = Vec::with_capacity(rows.len());
        let mut ready: Vec<(usize, Ready)> = Vec::new();
        let mut seen = HashSet::new();
        for row in rows {
            match row.and_then(|r| self.check_row(r, now, "user_imported", &ClientContext::default())) {
                Err(why) => out.push(Imported::Rejected(why)),
                // A second row with a username already in this batch: as if it were imported.
                Ok(r) if !seen.insert(r.canonical.clone()) => out.push(Imported::Exists),
                Ok(r) => {
                    ready.push((out.len(), r));
                    out.push(Imported::Created);
                }
            }
        }
        if dry_run {
            for (i, r) in &ready {
                if self.auth.store.user_by_username(&r.canonical).await?.is_some() {
                    out[*i] = Imported::Exists;
                }
            }
            return Ok(out);
        }
        let batch = Batch(ready.iter().flat_map(|(_, r)| r.writes.iter().cloned()).collect());
        match self.auth.apply(batch).await {
            Ok(()) => return Ok(out),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        // Some username is taken (a resumed import, or someone signed up meanwhile): leave out
        // those that exist and write the rest; a row that still conflicts is tried alone.
        let mut rest = Vec::new();
        for (i, r) in ready {
            if self.auth.store.user_by_username(&r.canonical).await?.is_some() {
                out[i] = Imported::Exists;
            } else {
                rest.push((i, r));
            }
        }
        let batch = Batch(rest.iter().flat_map(|(_, r)| r.writes.iter().cloned()).collect());
        match self.auth.apply(batch).await {
            Ok(()) => return Ok(out),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        for (i, r) in rest {
            match self.auth.apply(Batch(r.writes)).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => {
                    out[i] = if self.auth.store.user_by_username(&r.canonical).await?.is_some() {
                        Imported::Exists
                    } else {
                        Imported::Rejected("the username rests after a deletion".into())
                    };
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// A row as sign-up would check it, and the writes that create its account, audited as
    /// `kind` (an import, or a lazy migration at sign-in).
    pub(crate) fn check_row(
        &self,
        r: ImportRow,
        now: time::OffsetDateTime,
        kind: &str,
        ctx: &ClientContext,
    ) -> Result<Ready, String> {
        let policy = &self.auth.settings.sign_up;
        let username = Username::parse(&r.username).map_err(|e| format!("username: {e}"))?;
        let email = r.email.as_deref().filter(|s| !s.is_empty()).map(Email::parse).transpose();
        let email = email.map_err(|e| format!("email: {e}"))?;
        let phone = r.phone.as_deref().filter(|s| !s.is_empty()).map(Phone::parse).transpose();
        let phone = phone.map_err(|e| format!("phone: {e}"))?;
        if policy.require_email && email.is_none() {
            return Err("email is required (policy.sign_up.require_email)".into());
        }
        if policy.require_phone && phone.is_none() {
            return Err("phone is required (policy.sign_up.require_phone)".into());
        }
        if let Some(l) = &r.locale {
            crate::messages::check_locale(l).map_err(|m| format!("locale: {m}"))?;
        }
        for (name, value) in &r.attributes {
            let decl = self.auth.settings.attributes.iter().find(|a| &a.name == name);
            let decl = decl.ok_or_else(|| format!("attributes: {name} is not declared in [[policy.attributes]]"))?;
            decl.check(value).map_err(|m| format!("attributes.{name}: {m}"))?;
        }
        if r.name.as_ref().is_some_and(|n| n.chars().count() > 256) {
            return Err("name: at most 256 characters".into());
        }
        let (password_hash, scheme) = match &r.password_hash {
            Some(h) => {
                let legacy = Legacy::parse(h).map_err(|e| format!("password_hash: {e}"))?;
                (Some(stored(h)), Some(legacy.scheme()))
            }
            None => (None, None),
        };
        let user = User {
            id: UserId::new(),
            username: username.display.clone(),
            username_canonical: username.canonical.clone(),
            // A flag without its address (absent or empty) verifies nothing.
            email_verified: r.email_verified && email.is_some(),
            phone_verified: r.phone_verified && phone.is_some(),
            email: email.map(|e| e.as_str().to_owned()),
            phone: phone.map(|p| p.as_str().to_owned()),
            status: UserStatus::Active,
            password_hash,
            must_change_password: false,
            preferred_mfa: None,
            phone_changed_at: None,
            email_changed_at: None,
            profile: Profile { name: r.name, locale: r.locale, zoneinfo: None, picture: None, custom: r.attributes },
            created_at: now,
            updated_at: now,
        };
        let mut writes = vec![
            Write::ClaimUsername { digest: self.auth.retired_username(&user.username_canonical), at: now },
            Write::InsertUser(user.clone()),
        ];
        if let Some(secret) = &r.totp_secret {
            let key = totp_key(secret)?;
            let id = FactorId::new();
            let sealed =
                self.auth.keys.seal(self.auth.rng.as_ref(), &id.to_string(), &key).map_err(|e| e.to_string())?;
            writes.push(Write::InsertFactor(Factor {
                id,
                user_id: user.id,
                kind: TOTP.into(),
                state: ACTIVE.into(),
                secret_sealed: Some(sealed),
                last_step: None,
                created_at: now,
                last_used_at: None,
            }));
        }
        let detail = serde_json::json!({"password": scheme, "totp": r.totp_secret.is_some()});
        writes.push(audit(now, Some(user.id), kind, "success", ctx, detail));
        Ok(Ready { canonical: user.username_canonical.clone(), user, writes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_secrets_are_base32_as_apps_show_them() {
        assert_eq!(totp_key("JBSW Y3DP EHPK 3PXP").unwrap(), b"Hello!\xde\xad\xbe\xef".to_vec());
        assert_eq!(totp_key("jbswy3dpehpk3pxp").unwrap().len(), 10);
        assert!(totp_key("JBSWY3DP").is_err(), "40 bits is too short");
        assert!(totp_key("not base32!").is_err());
    }
}
