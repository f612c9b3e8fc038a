//! Message texts in the user's language. Each message has an id, a subject and a body with
//! `{placeholders}`; Latchkey ships English and German, and the operator overrides any text, or
//! adds a language, with `[policy.messages.<locale>.<id>]` (`subject`, `body`).
//!
//! A user's `locale` (`PATCH /v1/me`, or given at sign-up or invitation) picks the language:
//! the exact tag first (`de-CH`), then its language (`de`), then `policy.default_locale`, then
//! English. The operator's text wins at each of those steps over the built-in one.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One text: the subject (email subject, push title) and the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// The subject.
    pub subject: String,
    /// The body, with `{placeholders}`.
    pub body: String,
}

/// The operator's texts: locale → message id → text.
pub type Overrides = BTreeMap<String, BTreeMap<String, Template>>;

const CODE_EN: &str =
    "Your {product} code is {code}. It expires in {minutes} minutes. If you did not ask for it, ignore this message.";
const CODE_DE: &str = "Ihr {product}-Code lautet {code}. Er ist {minutes} Minuten gültig. Wenn Sie ihn nicht angefordert haben, ignorieren Sie diese Nachricht.";

/// The built-in texts: (locale, id, subject, body).
const BUILT_IN: &[(&str, &str, &str, &str)] = &[
    ("en", "code_sign_up", "Confirm your sign-up", CODE_EN),
    ("en", "code_sign_in", "Your sign-in code", CODE_EN),
    ("en", "code_recovery", "Recover your account", CODE_EN),
    ("en", "code_verify_email", "Verify your email address", CODE_EN),
    ("en", "code_verify_phone", "Verify your phone", CODE_EN),
    ("en", "code_verify_new_address", "Verify your new address", CODE_EN),
    (
        "en",
        "password_changed",
        "Your password was changed",
        "The password of your {product} account was changed. If this was not you, put the account on hold: {link}",
    ),
    (
        "en",
        "password_added",
        "A password was added",
        "A password was added to your {product} account. If this was not you, put the account on hold: {link}",
    ),
    (
        "en",
        "account_deleted",
        "Your account was deleted",
        "Your {product} account {username} was deleted, with everything it kept. If you did not ask for this, contact the service: the username is kept for {days} days.",
    ),
    (
        "en",
        "factor_removed",
        "A second factor was removed",
        "A second factor ({factor}) was removed from your account. If this was not you, reset your password and contact support.",
    ),
    (
        "en",
        "factor_reset",
        "A second factor was removed",
        "A second factor ({factor}) was removed from your account by the service's administrators. If this was not you, reset your password and contact support.",
    ),
    (
        "en",
        "device_removed",
        "A device was removed",
        "The device \"{device}\" was removed from your account and can no longer sign in.",
    ),
    (
        "en",
        "device_revoked",
        "A device was removed",
        "The device \"{device}\" was removed from your account by the service's administrators and can no longer sign in.",
    ),
    (
        "en",
        "invitation",
        "Your invitation",
        "You are invited to {product} as {username}. Choose your password here: {link} (or enter the code {code} in the app). The invitation expires on {until}.",
    ),
    ("de", "code_sign_up", "Bestätigen Sie Ihre Registrierung", CODE_DE),
    ("de", "code_sign_in", "Ihr Anmeldecode", CODE_DE),
    ("de", "code_recovery", "Konto wiederherstellen", CODE_DE),
    ("de", "code_verify_email", "Bestätigen Sie Ihre E-Mail-Adresse", CODE_DE),
    ("de", "code_verify_phone", "Bestätigen Sie Ihre Telefonnummer", CODE_DE),
    ("de", "code_verify_new_address", "Bestätigen Sie Ihre neue Adresse", CODE_DE),
    (
        "de",
        "password_changed",
        "Ihr Passwort wurde geändert",
        "Das Passwort Ihres {product}-Kontos wurde geändert. Wenn Sie das nicht waren, sperren Sie das Konto: {link}",
    ),
    (
        "de",
        "password_added",
        "Ein Passwort wurde hinzugefügt",
        "Ihrem {product}-Konto wurde ein Passwort hinzugefügt. Wenn Sie das nicht waren, sperren Sie das Konto: {link}",
    ),
    (
        "de",
        "account_deleted",
        "Ihr Konto wurde gelöscht",
        "Ihr {product}-Konto {username} wurde mit allen gespeicherten Daten gelöscht. Wenn Sie das nicht veranlasst haben, wenden Sie sich an den Dienst: Der Benutzername bleibt {days} Tage reserviert.",
    ),
    (
        "de",
        "factor_removed",
        "Ein zweiter Faktor wurde entfernt",
        "Ein zweiter Faktor ({factor}) wurde von Ihrem Konto entfernt. Wenn Sie das nicht waren, setzen Sie Ihr Passwort zurück und wenden Sie sich an den Support.",
    ),
    (
        "de",
        "factor_reset",
        "Ein zweiter Faktor wurde entfernt",
        "Ein zweiter Faktor ({factor}) wurde von den Administratoren des Dienstes von Ihrem Konto entfernt. Wenn Sie das nicht waren, setzen Sie Ihr Passwort zurück und wenden Sie sich an den Support.",
    ),
    (
        "de",
        "device_removed",
        "Ein Gerät wurde entfernt",
        "Das Gerät „{device}“ wurde von Ihrem Konto entfernt und kann sich nicht mehr anmelden.",
    ),
    (
        "de",
        "device_revoked",
        "Ein Gerät wurde entfernt",
        "Das Gerät „{device}“ wurde von den Administratoren des Dienstes von Ihrem Konto entfernt und kann sich nicht mehr anmelden.",
    ),
    (
        "de",
        "invitation",
        "Ihre Einladung",
        "Sie sind zu {product} eingeladen, als {username}. Wählen Sie hier Ihr Passwort: {link} (oder geben Sie den Code {code} in der App ein). Die Einladung gilt bis {until}.",
    ),
];

/// The ids of every message.
pub fn ids() -> impl Iterator<Item = &'static str> {
    BUILT_IN.iter().filter(|(l, ..)| *l == "en").map(|(_, id, ..)| *id)
}

/// The `{placeholders}` of a text, in order.
fn placeholders(text: &str) -> Vec<&str> {
    let mut out = vec![];
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) if after[..end].bytes().all(|b| b.is_ascii_lowercase() || b == b'_') && end > 0 => {
                out.push(&after[..end]);
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

/// Why the operator's texts are refused, if they are: an unknown id, a locale that is not a
/// language tag's shape, or a body missing a placeholder the English text has (a code message
/// without `{code}` would send nothing useful).
pub fn problem(overrides: &Overrides) -> Option<String> {
    for (locale, texts) in overrides {
        let shape = locale.split('-').enumerate().all(|(i, p)| {
            (if i == 0 { (2..=3).contains(&p.len()) } else { (1..=8).contains(&p.len()) })
                && p.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if !shape {
            return Some(format!("policy.messages: {locale:?} is not a language tag (en, de, pt-BR)"));
        }
        for (id, t) in texts {
            let Some((_, _, _, english)) = BUILT_IN.iter().find(|(l, i, ..)| *l == "en" && i == id) else {
                return Some(format!("policy.messages.{locale}: no message is called {id:?}"));
            };
            let have = placeholders(&t.body);
            if let Some(missing) = placeholders(english).into_iter().find(|p| !have.contains(p)) {
                return Some(format!("policy.messages.{locale}.{id}: the body needs {{{missing}}}"));
            }
        }
    }
    None
}

/// The texts of message `id` for `locale`, with the placeholders filled in.
pub fn render(
    overrides: &Overrides,
    default_locale: &str,
    locale: Option<&str>,
    id: &str,
    args: &[(&str, &str)],
) -> (String, String) {
    let mut candidates: Vec<String> = vec![];
    if let Some(l) = locale {
        candidates.push(l.to_owned());
        if let Some((language, _)) = l.split_once('-') {
            candidates.push(language.to_owned());
        }
    }
    candidates.push(default_locale.to_owned());
    candidates.push("en".to_owned());
    let found = candidates.iter().find_map(|c| {
        let operator = overrides
            .iter()
            .find(|(l, _)| l.eq_ignore_ascii_case(c))
            .and_then(|(_, texts)| texts.get(id))
            .map(|t| (t.subject.as_str(), t.body.as_str()));
        operator.or_else(|| {
            BUILT_IN.iter().find(|(l, i, ..)| l.eq_ignore_ascii_case(c) && *i == id).map(|(_, _, s, b)| (*s, *b))
        })
    });
    let (subject, body) = found.unwrap_or((id, id));
    (fill(subject, args), fill(body, args))
}

/// `text` with each `{name}` of `args` replaced by its value (in one pass: a value holding
/// braces is never read as a placeholder).
fn fill(text: &str, args: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}').and_then(|end| args.iter().find(|(k, _)| *k == &after[..end]).map(|(_, v)| (end, v))) {
            Some((end, v)) => {
                out.push_str(v);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_exists_in_english_and_german_with_the_same_placeholders() {
        for id in ids() {
            let en = BUILT_IN.iter().find(|(l, i, ..)| *l == "en" && *i == id).unwrap();
            let de = BUILT_IN.iter().find(|(l, i, ..)| *l == "de" && *i == id).unwrap_or_else(|| panic!("de {id}"));
            let (mut a, mut b) = (placeholders(en.3), placeholders(de.3));
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "{id}");
        }
    }

    #[test]
    fn the_language_is_the_tag_then_its_language_then_the_default_then_english() {
        let args = [("product", "Acme"), ("code", "123456"), ("minutes", "10")];
        let none = Overrides::new();
        let (s, b) = render(&none, "en", Some("de-CH"), "code_sign_in", &args);
        assert_eq!(
            (s.as_str(), b.as_str()),
            (
                "Ihr Anmeldecode",
                "Ihr Acme-Code lautet 123456. Er ist 10 Minuten gültig. Wenn Sie ihn nicht angefordert haben, ignorieren Sie diese Nachricht."
            )
        );
        assert_eq!(render(&none, "en", Some("fr"), "code_sign_in", &args).0, "Your sign-in code");
        assert_eq!(render(&none, "de", None, "code_sign_in", &args).0, "Ihr Anmeldecode", "the default");
        let ops: Overrides = BTreeMap::from([(
            "fr".to_owned(),
            BTreeMap::from([(
                "code_sign_in".to_owned(),
                Template { subject: "Votre code".into(), body: "{product} : {code} ({minutes} min)".into() },
            )]),
        )]);
        assert_eq!(
            render(&ops, "en", Some("fr-CA"), "code_sign_in", &args),
            ("Votre code".into(), "Acme : 123456 (10 min)".into())
        );
    }

    #[test]
    fn placeholders_fill_once_and_leave_strange_braces_alone() {
        assert_eq!(fill("{a} and {b} {unknown} {", &[("a", "{b}"), ("b", "x")]), "{b} and x {unknown} {");
    }

    #[test]
    fn an_override_keeps_the_placeholders_that_matter() {
        let one = |locale: &str, id: &str, body: &str| -> Overrides {
            BTreeMap::from([(
                locale.to_owned(),
                BTreeMap::from([(id.to_owned(), Template { subject: "s".into(), body: body.into() })]),
            )])
        };
        assert_eq!(problem(&one("fr", "code_sign_in", "{product} {code} {minutes}")), None);
        assert!(problem(&one("fr", "code_sign_in", "{product} {minutes}")).unwrap().contains("needs {code}"));
        assert!(problem(&one("fr", "no_such_message", "x")).is_some());
        assert!(problem(&one("french!", "code_sign_in", "{product} {code} {minutes}")).is_some());
    }
}
