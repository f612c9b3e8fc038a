//! The user's own profile attributes (`PATCH /v1/me`): the OpenID Connect standard names a user
//! edits themselves. Each is checked exactly as docs/openapi.json states it.

use super::Account;
use crate::attributes::Writer;
use crate::auth::{Principal, audit};
use crate::error::AuthError;
use crate::messages::check_locale;
use crate::model::*;
use crate::store::{Batch, Write};
use latchkey_proto as proto;

/// A check of one attribute's value: the message of a `400` when it fails.
type Check = fn(&str) -> Result<(), &'static str>;

/// One attribute of an update: its name, what was sent (`Some(None)`: cleared), its check, and
/// where it goes.
type Field<'a> = (&'static str, Option<Option<String>>, Check, &'a mut Option<String>);

fn control(c: char) -> bool {
    c.is_control()
}

/// `^[^\u0000-\u001F\u007F-\u009F]+$`, 1 to 256 characters.
fn check_name(v: &str) -> Result<(), &'static str> {
    let n = v.chars().count();
    if n == 0 || n > 256 || v.chars().any(control) {
        return Err("name: 1 to 256 characters, no control characters");
    }
    Ok(())
}

/// `^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$`, at most 64 characters (an IANA name's shape).
fn check_zoneinfo(v: &str) -> Result<(), &'static str> {
    let part = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-".contains(&b));
    let ok = v.len() <= 64 && v.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) && v.split('/').all(part);
    if ok { Ok(()) } else { Err("zoneinfo: an IANA time zone name, like Europe/Berlin") }
}

/// `^https://[^\u0000-\u0020\u007F-\u009F]+$`, at most 2,048 characters.
fn check_picture(v: &str) -> Result<(), &'static str> {
    let rest = v.strip_prefix("https://").unwrap_or_default();
    let ok = v.chars().count() <= 2048 && !rest.is_empty() && !rest.chars().any(|c| c == ' ' || control(c));
    if ok { Ok(()) } else { Err("picture: an https URL, at most 2,048 characters") }
}

impl Account<'_> {
    /// `PATCH /v1/me`: set (or with `null` clear) the attributes sent; the answer is `/v1/me`.
    pub async fn update_profile(
        &self,
        p: &Principal,
        req: proto::ProfileUpdate,
        ctx: ClientContext,
    ) -> Result<proto::Me, AuthError> {
        let (profile, changed) = self.updated_profile(&p.user.profile, req, Writer::User)?;
        let mut user = p.user.clone();
        if !changed.is_empty() {
            let now = self.auth.now();
            user.profile = profile;
            user.updated_at = now;
            let detail = serde_json::json!({"session_id": p.session.id, "fields": changed});
            self.auth
                .store
                .apply(Batch(vec![
                    Write::UpdateUser(user.clone()),
                    audit(now, Some(user.id), "profile", "updated", &ctx, detail),
                ]))
                .await?;
        }
        let updated = Principal { user, ..p.clone() };
        Ok(self.me(&updated))
    }

    /// The profile after `req` as `writer` may write it, and the names of the fields changed.
    /// Standard attributes are checked as docs/openapi.json states; custom ones as declared
    /// (`[[policy.attributes]]`). Anything else is `400`; a custom attribute only admins write,
    /// sent by the user, is `403`. Nothing changes unless everything is accepted.
    pub(crate) fn updated_profile(
        &self,
        current: &Profile,
        req: proto::ProfileUpdate,
        writer: Writer,
    ) -> Result<(Profile, Vec<String>), AuthError> {
        let bad = |m: &str| AuthError::InvalidRequest(m.into());
        let mut profile = current.clone();
        let mut changed = vec![];
        let fields: [Field<'_>; 4] = [
            ("name", req.name, check_name, &mut profile.name),
            ("locale", req.locale, check_locale, &mut profile.locale),
            ("zoneinfo", req.zoneinfo, check_zoneinfo, &mut profile.zoneinfo),
            ("picture", req.picture, check_picture, &mut profile.picture),
        ];
        for (field, sent, check, slot) in fields {
            let Some(value) = sent else { continue };
            if let Some(v) = &value {
                check(v).map_err(bad)?;
            }
            if *slot != value {
                *slot = value;
                changed.push(field.to_owned());
            }
        }
        for (name, value) in req.attributes {
            let Some(decl) = self.auth.settings.attributes.iter().find(|d| d.name == name) else {
                return Err(match name.as_str() {
                    "email" | "phone" => {
                        bad(&format!("{name}: changes only through verification (POST /v1/me/factors)"))
                    }
                    _ => bad(&format!("{name}: not an attribute of this service")),
                });
            };
            if writer == Writer::User && decl.writable_by == Writer::Admin {
                return Err(AuthError::Forbidden);
            }
            let before = profile.custom.get(&name).cloned();
            if value.is_null() {
                profile.custom.remove(&name);
            } else {
                decl.check(&value).map_err(|m| bad(&m))?;
                profile.custom.insert(name.clone(), value);
            }
            if profile.custom.get(&name) != before.as_ref() {
                changed.push(name);
            }
        }
        Ok((profile, changed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_checked_as_the_openapi_document_states() {
        assert!(check_name("Zoë Łukasiewicz-李").is_ok());
        assert!(check_name("").is_err() && check_name("a\u{0}b").is_err() && check_name("a\u{85}b").is_err());
        assert!(check_name(&"x".repeat(257)).is_err());
        for ok in ["en", "de-CH", "zh-Hant-TW", "es-419"] {
            assert!(check_locale(ok).is_ok(), "{ok}");
        }
        for bad in ["e", "english", "en_US", "en-", "-en", "en-123456789"] {
            assert!(check_locale(bad).is_err(), "{bad}");
        }
        for ok in ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"] {
            assert!(check_zoneinfo(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/Berlin", "Europe//Berlin", "Europe/Berlin/", "9Z", "Europe/Ber lin"] {
            assert!(check_zoneinfo(bad).is_err(), "{bad}");
        }
        assert!(check_picture("https://cdn.example.com/a.png?x=1").is_ok());
        for bad in ["http://example.com/a.png", "https://", "https://a b", "javascript:alert(1)"] {
            assert!(check_picture(bad).is_err(), "{bad}");
        }
    }
}
