//! Identifiers users type: usernames, email addresses, phone numbers. Parse, don't validate.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    /// The username is empty, too long, or has characters that are not allowed.
    #[error("username must be 1 to 64 letters, digits, or . _ - @ +")]
    Username,
    /// The username mixes writing systems (a Cyrillic `і` among Latin letters), so it could pass
    /// for another user's (Unicode UTS #39).
    #[error("username must be written in one script (it could be mistaken for another)")]
    MixedScript,
    /// Not an email address.
    #[error("email address is not valid")]
    Email,
    /// Not an E.164 phone number.
    #[error("phone number must be in E.164 form, like +15551234567")]
    Phone,
}

/// A username as registered, and its canonical form (NFKC, then lower-cased) that uniqueness,
/// look-ups and failure counters use, so `Alice`, `alice` and `ａｌｉｃｅ` are one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Username {
    /// As the user typed it, NFKC-normalised.
    pub display: String,
    /// The canonical key.
    pub canonical: String,
}

impl Username {
    /// Parse a username.
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        // As typed, at most 64 characters too (the OpenAPI document's `maxLength`).
        if raw.chars().count() > 64 {
            return Err(IdentifierError::Username);
        }
        let display: String = raw.trim().nfkc().collect();
        let canonical = canonical_username(&display);
        let ok_len = (1..=64).contains(&canonical.chars().count());
        let ok_chars = canonical.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'));
        if !(ok_len && ok_chars) {
            return Err(IdentifierError::Username);
        }
        // UTS #39 mixed-script detection: `vіctim1` (Cyrillic і) would be a separate account that
        // looks like `victim1` in every notice and list. One script (plus digits and punctuation).
        if !unicode_security::MixedScript::is_single_script(canonical.as_str()) {
            return Err(IdentifierError::MixedScript);
        }
        Ok(Self { display, canonical })
    }
}

/// The canonical key of a username offered at sign-in, recovery or administration: refused when
/// it could never name an account (empty, or longer than a username may be), so no unbounded
/// string reaches a store as a counter or rate-limit key (issue 11, item 5).
pub fn lookup_key(raw: &str) -> Result<String, IdentifierError> {
    // A username is at most 64 characters as typed (the OpenAPI document's `maxLength`), so
    // the key is bounded too: NFKC expands a character to at most 18.
    // No username has a control character (`Username::parse` refuses them, the OpenAPI
    // document's pattern too), and a NUL cannot even be stored in PostgreSQL: such a name is
    // refused before it becomes a key.
    if raw.chars().count() > 64 || raw.chars().any(char::is_control) {
        return Err(IdentifierError::Username);
    }
    let key = canonical_username(raw);
    if key.is_empty() {
        return Err(IdentifierError::Username);
    }
    Ok(key)
}

/// The canonical key of any string a user offers as a username, valid or not. Used for failure
/// counters, so an attacker cannot dodge a lockout by changing case or normalisation form.
pub fn canonical_username(raw: &str) -> String {
    raw.trim().nfkc().collect::<String>().to_lowercase().nfkc().collect()
}

/// An email address: `local@domain`, the domain lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    /// Parse an address: exactly the addresses that are delivered as typed — the WHATWG (HTML)
    /// "valid email address" rule, with a dotted domain, at most 254 characters, and no RFC 2047
    /// encoded word (`=?…?=`) that a mail library would decode into another recipient. Display
    /// names, comments, quoted local parts and non-ASCII addresses are refused at the door.
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        let raw = raw.trim();
        let (local, domain) = raw.split_once('@').ok_or(IdentifierError::Email)?;
        let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-.".contains(c);
        let label = |l: &str| {
            (1..=63).contains(&l.len())
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let ok = !local.is_empty()
            && local.chars().all(atext)
            && !local.contains("=?")
            && domain.contains('.')
            && domain.split('.').all(label)
            && raw.len() <= 254;
        if !ok {
            return Err(IdentifierError::Email);
        }
        Ok(Self(format!("{local}@{}", domain.to_lowercase())))
    }
    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `a***@e***.com`: enough for the user to recognise, not enough to harvest.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.rsplit_once('@').unwrap_or((&self.0, ""));
        let (host, tld) = domain.rsplit_once('.').unwrap_or((domain, ""));
        format!("{}***@{}***.{}", first_char(local), first_char(host), tld)
    }
}

/// A phone number in E.164 form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phone(String);

impl Phone {
    /// Parse `+` followed by 8 to 15 digits; spaces, dashes and parentheses are dropped.
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        let cleaned: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.')).collect();
        let digits = cleaned.strip_prefix('+').ok_or(IdentifierError::Phone)?;
        if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0') {
            Ok(Self(cleaned))
        } else {
            Err(IdentifierError::Phone)
        }
    }
    /// The number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `+*******4567`.
    pub fn masked(&self) -> String {
        let n = self.0.len();
        let tail: String = self.0.chars().skip(n.saturating_sub(4)).collect();
        format!("+{}{}", "*".repeat(n.saturating_sub(5)), tail)
    }
}

fn first_char(s: &str) -> String {
    s.chars().next().map(String::from).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_that_differ_in_case_or_normal_form_are_one_canonical_name() {
        let a = Username::parse("Alice").unwrap();
        let b = Username::parse("ａｌｉｃｅ").unwrap();
        let c = Username::parse("ALICE").unwrap();
        assert_eq!(a.canonical, "alice");
        assert_eq!(a.canonical, b.canonical);
        assert_eq!(a.canonical, c.canonical);
        assert_eq!(canonical_username(" ALICE "), "alice");
    }

    #[test]
    fn a_lookup_refuses_control_characters_and_trims_spaces() {
        assert_eq!(lookup_key(" alice ").unwrap(), "alice");
        for bad in ["a\u{0}b", "\u{7}", "al\nice", "alice\n", "a\u{85}b", ""] {
            assert!(lookup_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_addresses_delivered_as_typed_are_accepted() {
        for good in
            ["alice@example.com", "a.b+tag@mail.example.co.uk", "o'neil@example.org", "x_y-z@sub-domain.example"]
        {
            assert!(Email::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "x<attacker@evil.example>",
            "Alice <alice@example.com>",
            "=?utf-8?q?attacker=40evil.example?=@victim.example",
            "\"a@b\"@example.com",
            "alice@example.com (comment)",
            "alice@@example.com",
            "alice@exa mple.com",
            "alice@-example.com",
            "alice@example",
            "alïce@example.com",
            "alice@exämple.com",
            "alice@example.com\r\nBcc: x@evil.example",
            "alice@[127.0.0.1]",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_username_written_in_two_scripts_is_refused() {
        assert!(Username::parse("victim1").is_ok());
        assert!(Username::parse("жена").is_ok(), "one script other than Latin");
        assert_eq!(Username::parse("v\u{0456}ctim1"), Err(IdentifierError::MixedScript), "Cyrillic і");
        assert_eq!(Username::parse("p\u{0430}ypal"), Err(IdentifierError::MixedScript), "Cyrillic а");
    }

    #[test]
    fn bad_usernames_are_refused() {
        for bad in ["", "a b", "a/b", &"x".repeat(65), "bob\u{0}"] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails_and_phones_parse_and_mask() {
        let e = Email::parse("Alice@Example.COM").unwrap();
        assert_eq!(e.as_str(), "Alice@example.com");
        assert_eq!(e.masked(), "A***@e***.com");
        assert!(Email::parse("no-at-sign").is_err());
        assert!(Email::parse("a@localhost").is_err());
        let p = Phone::parse("+1 (555) 123-4567").unwrap();
        assert_eq!(p.as_str(), "+15551234567");
        assert_eq!(p.masked(), "+*******4567");
        assert!(Phone::parse("5551234567").is_err());
        assert!(Phone::parse("+12").is_err());
    }
}
