//! Passkeys (WebAuthn): the relying party as configured (`[policy.passkeys]`), its origins (web
//! and Android apps), the `.well-known` files that tie the apps to the relying-party id, and the
//! few facts Latchkey reads from a credential that webauthn-rs keeps to itself. The ceremonies
//! themselves are webauthn-rs's; the flows that run them are `flows/passkey.rs`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{AttestationCaList, AttestationCaListBuilder, AttestedPasskey, Url, Uuid};
use webauthn_rs::{Webauthn, WebauthnBuilder};

/// `[policy.passkeys]`: off until `rp_id` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasskeyPolicy {
    /// The relying-party id: the domain passkeys are bound to (`example.com`). It can never
    /// change without losing every passkey registered.
    pub rp_id: Option<String>,
    /// The name platforms show (default: the product name).
    pub rp_name: Option<String>,
    /// The web origins allowed to use them (default `https://<rp_id>`); each on the rp id or
    /// a subdomain of it. iOS apps use the associated domain's origin, so they need nothing
    /// here beyond `apple_app_ids`.
    pub origins: Vec<String>,
    /// Android apps: each signing certificate's SHA-256 fingerprint allows the origin
    /// `android:apk-key-hash:<Base64url of it>`, and is listed in `assetlinks.json`.
    pub android_apps: Vec<AndroidApp>,
    /// iOS apps, `<team id>.<bundle id>`, listed as `webcredentials` in
    /// `apple-app-site-association`.
    pub apple_app_ids: Vec<String>,
    /// Authenticator models whose attestation Latchkey trusts. A passkey registered with
    /// `"attested": true` must chain to one of these roots and be one of its models; one that
    /// is device-bound (not backup-eligible) then gives `aal3` with user verification.
    /// Checked again at every use, so removing an entry takes `aal3` from its keys.
    pub trusted_authenticators: Vec<TrustedAuthenticator>,
}

/// An authenticator vendor's attestation root and the models (AAGUIDs) it vouches for, as
/// the vendor or the FIDO Metadata Service publishes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedAuthenticator {
    /// The models' name, for the passkey list and the audit trail ("YubiKey 5 Series").
    pub name: String,
    /// The vendor's attestation root certificate, PEM.
    pub ca: String,
    /// The AAGUIDs of the models this root vouches for.
    pub aaguids: Vec<String>,
}

/// An Android app allowed to use the relying party's passkeys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AndroidApp {
    /// `com.example.app`.
    pub package_name: String,
    /// SHA-256 fingerprints of the app's signing certificates, hex with colons
    /// (`keytool -list -v`, or the Play Console's app signing page).
    pub sha256_cert_fingerprints: Vec<String>,
}

impl PasskeyPolicy {
    /// Whether passkeys are configured.
    pub fn enabled(&self) -> bool {
        self.rp_id.is_some()
    }

    fn web_origins(&self, rp_id: &str) -> Vec<String> {
        if self.origins.is_empty() { vec![format!("https://{rp_id}")] } else { self.origins.clone() }
    }

    /// Every origin a ceremony may come from: the web origins, then each Android app's.
    pub fn all_origins(&self) -> Result<Vec<Url>, String> {
        let Some(rp_id) = self.rp_id.as_deref() else { return Ok(vec![]) };
        let mut out = vec![];
        for o in self.web_origins(rp_id) {
            let url = Url::parse(&o).map_err(|_| format!("policy.passkeys.origins: `{o}` is not a URL"))?;
            let host = url.host_str().unwrap_or_default();
            let on_rp = host == rp_id || host.ends_with(&format!(".{rp_id}"));
            if !on_rp || !matches!(url.scheme(), "https" | "http") || url.path() != "/" {
                return Err(format!("policy.passkeys.origins: `{o}` is not an origin on `{rp_id}` or a subdomain"));
            }
            if url.scheme() == "http" && host != "localhost" {
                return Err(format!("policy.passkeys.origins: `{o}` must be https (http only for localhost)"));
            }
            out.push(url);
        }
        for app in &self.android_apps {
            if app.package_name.is_empty() || app.sha256_cert_fingerprints.is_empty() {
                return Err("policy.passkeys.android_apps: each needs package_name and sha256_cert_fingerprints".into());
            }
            for f in &app.sha256_cert_fingerprints {
                let hash = apk_key_hash(f).ok_or_else(|| {
                    format!("policy.passkeys.android_apps: `{f}` is not a SHA-256 fingerprint (32 hex bytes, colons)")
                })?;
                out.push(Url::parse(&format!("android:apk-key-hash:{hash}")).map_err(|e| e.to_string())?);
            }
        }
        Ok(out)
    }

    /// What is wrong with the configuration, if anything.
    pub fn problem(&self) -> Option<String> {
        let rp_id = self.rp_id.as_deref()?;
        if rp_id.is_empty() || rp_id.contains(['/', ':']) || rp_id != rp_id.to_ascii_lowercase() {
            return Some(format!("policy.passkeys.rp_id: `{rp_id}` is not a lower-case domain like example.com"));
        }
        if let Some(bad) = self.apple_app_ids.iter().find(|a| !valid_apple_app_id(a)) {
            return Some(format!("policy.passkeys.apple_app_ids: `{bad}` is not <team id>.<bundle id>"));
        }
        if let Err(e) = self.attestation_cas() {
            return Some(e);
        }
        self.webauthn("Latchkey").err()
    }

    /// The relying party for the ceremonies.
    pub fn webauthn(&self, product_name: &str) -> Result<Webauthn, String> {
        let rp_id = self.rp_id.as_deref().ok_or("passkeys are not configured")?;
        let origins = self.all_origins()?;
        let first = origins.first().ok_or("policy.passkeys: no origin")?;
        let mut b = WebauthnBuilder::new(rp_id, first)
            .map_err(|e| format!("policy.passkeys: rp_id and origins do not fit together ({e})"))?
            .rp_name(self.rp_name.as_deref().unwrap_or(product_name));
        for o in &origins[1..] {
            b = b.append_allowed_origin(o);
        }
        b.build().map_err(|e| format!("policy.passkeys: {e}"))
    }

    /// The trusted authenticators as webauthn-rs's CA list; `None` when there are none.
    pub fn attestation_cas(&self) -> Result<Option<AttestationCaList>, String> {
        if self.trusted_authenticators.is_empty() {
            return Ok(None);
        }
        let mut b = AttestationCaListBuilder::new();
        for t in &self.trusted_authenticators {
            let what = format!("policy.passkeys.trusted_authenticators `{}`", t.name);
            if t.name.trim().is_empty() || t.aaguids.is_empty() {
                return Err(format!("{what}: each needs a name, a ca and at least one aaguid"));
            }
            for a in &t.aaguids {
                let aaguid = Uuid::parse_str(a).map_err(|_| format!("{what}: `{a}` is not an AAGUID"))?;
                b.insert_device_pem(t.ca.as_bytes(), aaguid, t.name.clone(), Default::default())
                    .map_err(|_| format!("{what}: ca is not a PEM certificate"))?;
            }
        }
        Ok(Some(b.build()))
    }

    /// Whether a stored credential record (webauthn-rs's JSON) of the model `aaguid` is one
    /// the policy trusts now: its attestation chains to a trusted root that vouches for the
    /// model, and it is device-bound. The name of the trusted models, or `None`.
    pub fn trusted_attestation(&self, record: &str, aaguid: Option<&str>, backup_eligible: bool) -> Option<String> {
        if backup_eligible {
            return None;
        }
        let cas = self.attestation_cas().ok()??;
        let aaguid = Uuid::parse_str(aaguid?).ok()?;
        // A passkey's record is the same credential as an attested one's.
        let key: AttestedPasskey = serde_json::from_str(record).ok()?;
        let ca = key.verify_attestation(&cas).ok()?;
        let description = ca.aaguids().get(&aaguid)?;
        Some(description.description_en().to_owned())
    }

    /// `/.well-known/assetlinks.json` (Digital Asset Links): each Android app may use the
    /// relying party's credentials. `None` without Android apps.
    pub fn assetlinks(&self) -> Option<serde_json::Value> {
        if !self.enabled() || self.android_apps.is_empty() {
            return None;
        }
        let statements: Vec<_> = self
            .android_apps
            .iter()
            .map(|a| {
                let prints: Vec<String> = a.sha256_cert_fingerprints.iter().map(|f| f.to_ascii_uppercase()).collect();
                serde_json::json!({
                    "relation": ["delegate_permission/common.get_login_creds", "delegate_permission/common.handle_all_urls"],
                    "target": {"namespace": "android_app", "package_name": a.package_name, "sha256_cert_fingerprints": prints},
                })
            })
            .collect();
        Some(serde_json::Value::Array(statements))
    }

    /// `/.well-known/apple-app-site-association`: the iOS apps whose associated domains name
    /// this relying party (`webcredentials:<rp_id>`). `None` without iOS apps.
    pub fn apple_app_site_association(&self) -> Option<serde_json::Value> {
        if !self.enabled() || self.apple_app_ids.is_empty() {
            return None;
        }
        Some(serde_json::json!({"webcredentials": {"apps": self.apple_app_ids}}))
    }
}

/// The Android origin's hash for a certificate fingerprint: `AB:CD:…` (32 bytes) as Base64url.
pub fn apk_key_hash(fingerprint: &str) -> Option<String> {
    let hex: String = fingerprint.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..32).map(|i| u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()).collect();
    Some(URL_SAFE_NO_PAD.encode(bytes?))
}

pub(crate) fn valid_apple_app_id(id: &str) -> bool {
    let Some((team, bundle)) = id.split_once('.') else { return false };
    team.len() == 10
        && team.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && !bundle.is_empty()
        && bundle.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
}

/// The AAGUID (the authenticator's model) in a registration's `attestationObject`
/// (Base64url CBOR): authenticator data's bytes 37–52. `None` when absent or all zeros.
pub fn aaguid(attestation_object_b64: &str) -> Option<String> {
    let obj = URL_SAFE_NO_PAD.decode(attestation_object_b64.trim_end_matches('=')).ok()?;
    // The map's text key "authData" (0x68 + 8 bytes), then a byte string (major type 2).
    let key = b"\x68authData";
    let at = obj.windows(key.len()).position(|w| w == key)? + key.len();
    let (len, start) = match *obj.get(at)? {
        b @ 0x40..=0x57 => (usize::from(b - 0x40), at + 1),
        0x58 => (usize::from(*obj.get(at + 1)?), at + 2),
        0x59 => (usize::from(u16::from_be_bytes([*obj.get(at + 1)?, *obj.get(at + 2)?])), at + 3),
        _ => return None,
    };
    let auth_data = obj.get(start..start + len)?;
    let raw = auth_data.get(37..53)?;
    if raw.iter().all(|b| *b == 0) {
        return None;
    }
    uuid::Uuid::from_slice(raw).ok().map(|u| u.to_string())
}

/// Names of well-known authenticators by AAGUID (from their makers' published identifiers),
/// shown in the passkey list; others show their AAGUID only.
pub fn authenticator_name(aaguid: &str) -> Option<&'static str> {
    Some(match aaguid {
        "ea9b8d66-4d01-1d21-3ce4-b6b48cb575d4" => "Google Password Manager",
        "fbfc3007-154e-4ecc-8c0b-6e020557d7bd" => "iCloud Keychain",
        "dd4ec289-e01d-41c9-bb89-70fa845d4bf2" => "iCloud Keychain (Managed)",
        "adce0002-35bc-c60a-648b-0b25f1f05503" => "Chrome on Mac",
        "08987058-cadc-4b81-b6e1-30de50dcbe96" => "Windows Hello",
        "9ddd1817-af5a-4672-a2b9-3e3dd95000a9" => "Windows Hello",
        "6028b017-b1d4-4c02-b4b3-afcdafc96bb2" => "Windows Hello",
        "bada5566-a7aa-401f-bd96-45619a55120d" => "1Password",
        "d548826e-79b4-db40-a3d8-11116f7e8349" => "Bitwarden",
        "531126d6-e717-415c-9320-3d9aa6981239" => "Dashlane",
        "53414d53-554e-4700-0000-000000000000" => "Samsung Pass",
        _ => return None,
    })
}

/// The RFC 8176 `amr` of a passkey assertion: `hwk` for a device-bound key, `swk` for one its
/// authenticator may back up (synced), and `user` when the authenticator verified the user
/// (its PIN, pattern or biometric: WebAuthn does not say which).
pub fn amr(backup_eligible: bool, user_verified: bool) -> Vec<&'static str> {
    let key = if backup_eligible { "swk" } else { "hwk" };
    if user_verified { vec![key, "user"] } else { vec![key] }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy() -> PasskeyPolicy {
        PasskeyPolicy {
            rp_id: Some("example.com".into()),
            android_apps: vec![AndroidApp {
                package_name: "com.example.app".into(),
                sha256_cert_fingerprints: vec![
                    "14:6D:E9:83:C5:73:06:50:D8:EE:B9:95:2F:34:FC:64:16:A0:83:42:E6:1D:BE:A8:8A:04:96:B2:3F:CF:44:E5"
                        .into(),
                ],
            }],
            apple_app_ids: vec!["ABCDE12345.com.example.app".into()],
            ..PasskeyPolicy::default()
        }
    }

    #[test]
    fn android_origins_come_from_the_signing_certificates() {
        let origins = policy().all_origins().unwrap();
        assert_eq!(origins[0].as_str(), "https://example.com/");
        assert_eq!(origins[1].as_str(), "android:apk-key-hash:FG3pg8VzBlDY7rmVLzT8ZBagg0LmHb6oigSWsj_PROU");
        assert!(policy().problem().is_none());
        assert_eq!(policy().assetlinks().unwrap()[0]["target"]["package_name"], serde_json::json!("com.example.app"));
    }

    #[test]
    fn trusted_authenticators_need_a_pem_root_and_aaguids() {
        let root = crate::factors::attestation::testing::TestRoot::new().pem();
        let trusted = |ca: &str, aaguid: &str| TrustedAuthenticator {
            name: "Key".into(),
            ca: ca.into(),
            aaguids: vec![aaguid.into()],
        };
        let mut p = policy();
        p.trusted_authenticators = vec![trusted(&root, "cb69481e-8ff7-4039-93ec-0a2729a154a8")];
        assert!(p.problem().is_none());
        assert_eq!(p.attestation_cas().unwrap().unwrap().len(), 1);
        p.trusted_authenticators = vec![trusted("not a certificate", "cb69481e-8ff7-4039-93ec-0a2729a154a8")];
        assert!(p.problem().unwrap().contains("ca is not a PEM certificate"));
        p.trusted_authenticators = vec![trusted(&root, "yubikey")];
        assert!(p.problem().unwrap().contains("`yubikey` is not an AAGUID"));
        p.trusted_authenticators = vec![TrustedAuthenticator { aaguids: vec![], ..trusted(&root, "") }];
        assert!(p.problem().unwrap().contains("at least one aaguid"));
        // A record with no attestation is never trusted.
        assert!(p.trusted_attestation("{}", Some("cb69481e-8ff7-4039-93ec-0a2729a154a8"), false).is_none());
    }

    #[test]
    fn origins_off_the_rp_id_and_bad_app_ids_are_refused() {
        let mut p = policy();
        p.origins = vec!["https://evil.com".into()];
        assert!(p.problem().unwrap().contains("evil.com"));
        let mut p = policy();
        p.origins = vec!["http://example.com".into()];
        assert!(p.problem().unwrap().contains("https"));
        let mut p = policy();
        p.apple_app_ids = vec!["com.example.app".into()];
        assert!(p.problem().unwrap().contains("team id"));
        let mut p = policy();
        p.android_apps[0].sha256_cert_fingerprints = vec!["AB:CD".into()];
        assert!(p.problem().unwrap().contains("fingerprint"));
    }

    #[test]
    fn amr_tells_synced_from_device_bound() {
        assert_eq!(amr(false, true), ["hwk", "user"]);
        assert_eq!(amr(true, true), ["swk", "user"]);
        assert_eq!(amr(true, false), ["swk"]);
    }
}
