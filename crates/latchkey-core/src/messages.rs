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
    ("en", "push_action", "Approve an action?", "Open the app to see what you are approving."),
    ("en", "push_recovery", "Someone is recovering your account", "Open the app to approve or deny it."),
    ("en", "push_new_device", "A new device is signing in", "Open the app to approve or deny it."),
    ("en", "push_sign_in", "Approve a sign-in?", "Open the app to approve or deny it."),
    (
        "en",
        "account_on_hold",
        "Your account is on hold",
        "Your {product} account is on hold: every session was signed out and nobody can sign in until the account is recovered. To get back in, recover it with two proofs (for example your email and your authenticator app), or with one and a waiting period.",
    ),
    (
        "en",
        "sign_in_reported",
        "The sign-in you reported was ended",
        "The sign-in you reported was ended, and your next sign-ins to {product} will ask for a second factor for a while. Change your password: whoever signed in knows it.",
    ),
    (
        "en",
        "sign_in_notice",
        "New sign-in to your account",
        "Someone signed in to your account from {address}{place} with {agent} ({reasons}). If this was you, there is nothing to do. If it was not, this ends that sign-in and asks for a second factor at the next ones: {link} — and change your password.",
    ),
    (
        "en",
        "sign_in_refused",
        "A sign-in to your account was refused",
        "Someone used your password from {address}{place} with {agent} and was refused ({reasons}). If this was you, there is nothing to do. If it was not, this asks for a second factor at your next sign-ins: {link} — and change your password.",
    ),
    (
        "en",
        "recovery_started",
        "Your account is being recovered",
        "Someone started recovering your {product} account from {address}. Unless you cancel it, they can set a new password or add a device after {ready_at} UTC, and your other sessions and devices will be signed out. If this was not you, cancel it now: {link}",
    ),
    (
        "en",
        "recovered_password",
        "Your account was recovered",
        "Your {product} account was recovered from {address}: its password was changed, and every other session was signed out.{older} If this was not you, put the account on hold at once: {link}",
    ),
    (
        "en",
        "recovered_device",
        "Your account was recovered",
        "Your {product} account was recovered from {address}: a new device was added to it, and every other session was signed out.{older} If this was not you, put the account on hold at once: {link}",
    ),
    ("en", "older_devices_removed", "", " Older devices were removed."),
    (
        "en",
        "recovery_cancelled",
        "An account recovery was cancelled",
        "A recovery of your {product} account was cancelled. Nothing was changed. If you did not cancel it, someone with access to one of your devices or addresses did.",
    ),
    (
        "en",
        "phone_added",
        "A phone number was added",
        "The phone number {destination} was verified and is now used for sign-in codes on your account. If this was not you, put the account on hold: {link}",
    ),
    (
        "en",
        "phone_changed",
        "Your phone number was changed",
        "The phone number {destination} was verified and is now used for sign-in codes on your account. If this was not you, put the account on hold: {link}",
    ),
    (
        "en",
        "email_added",
        "An email address was added",
        "The email address {destination} was verified and is now used for sign-in codes on your account. If this was not you, put the account on hold: {link}",
    ),
    (
        "en",
        "email_changed",
        "Your email address was changed",
        "The email address {destination} was verified and is now used for sign-in codes on your account. If this was not you, put the account on hold: {link}",
    ),
    (
        "en",
        "totp_added",
        "An authenticator app was added",
        "An authenticator app was added as a second factor to your account. If this was not you, reset your password and contact support.",
    ),
    (
        "en",
        "passkey_added",
        "A passkey was added",
        "A passkey ({name}) was added to your account. If this was not you, reset your password and contact support.",
    ),
    (
        "en",
        "passkey_removed",
        "A passkey was removed",
        "A passkey ({name}) was removed from your account. If this was not you, reset your password and contact support.",
    ),
    (
        "en",
        "passkey_cloned",
        "A passkey may have been copied",
        "A sign-in with your passkey ({name}) was refused: its authenticator's counter went backwards, which happens when a key is copied. If you did not try to sign in, remove this passkey and contact support.",
    ),
    (
        "en",
        "recovery_codes_new",
        "New recovery codes",
        "A new set of recovery codes was generated for your account; the previous codes no longer work. If this was not you, reset your password and contact support.",
    ),
    (
        "en",
        "recovery_code_used",
        "A recovery code was used",
        "A recovery code was used to sign in to your account. {left} unused codes are left; you can generate a new set in your security settings, which makes the old ones stop working. If this was not you, reset your password and contact support.",
    ),
    (
        "en",
        "push_reported",
        "A sign-in you did not make was stopped",
        "Someone tried to sign in to your account and you answered \"this wasn't me\" on \"{device}\". Their sign-in was stopped and sign-in prompts on your devices are paused for a while. If someone knows your password, change it now.",
    ),
    (
        "en",
        "device_added",
        "A new device was added",
        "A new device, \"{device}\" ({platform}), can now sign in to your account without a password. If this was not you, remove it: {link}",
    ),
    (
        "en",
        "biometric_replaced",
        "A device's biometric key was replaced",
        "The device \"{device}\" registered a new biometric key (fingerprint or face settings changed on it). If this was not you, remove the device from your account.",
    ),
    ("en", "pin_changed", "A device's PIN was changed", "The app PIN of the device \"{device}\" was changed."),
    (
        "en",
        "preferred_mfa",
        "Your sign-in method changed",
        "Sign-in now asks for {method} first. If this was not you, reset your password and contact support.",
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
    ("de", "push_action", "Eine Aktion bestätigen?", "Öffnen Sie die App, um zu sehen, was Sie bestätigen."),
    (
        "de",
        "push_recovery",
        "Jemand stellt Ihr Konto wieder her",
        "Öffnen Sie die App, um zuzustimmen oder abzulehnen.",
    ),
    ("de", "push_new_device", "Ein neues Gerät meldet sich an", "Öffnen Sie die App, um zuzustimmen oder abzulehnen."),
    ("de", "push_sign_in", "Anmeldung bestätigen?", "Öffnen Sie die App, um zuzustimmen oder abzulehnen."),
    (
        "de",
        "account_on_hold",
        "Ihr Konto ist gesperrt",
        "Ihr {product}-Konto ist gesperrt: Alle Sitzungen wurden beendet, und niemand kann sich anmelden, bis das Konto wiederhergestellt ist. Stellen Sie es mit zwei Nachweisen wieder her (zum Beispiel Ihrer E-Mail-Adresse und Ihrer Authenticator-App) oder mit einem Nachweis und einer Wartezeit.",
    ),
    (
        "de",
        "sign_in_reported",
        "Die gemeldete Anmeldung wurde beendet",
        "Die gemeldete Anmeldung wurde beendet, und Ihre nächsten Anmeldungen bei {product} verlangen eine Zeit lang einen zweiten Faktor. Ändern Sie Ihr Passwort: Wer sich angemeldet hat, kennt es.",
    ),
    (
        "de",
        "sign_in_notice",
        "Neue Anmeldung bei Ihrem Konto",
        "Jemand hat sich von {address}{place} mit {agent} bei Ihrem Konto angemeldet ({reasons}). Wenn Sie das waren, ist nichts zu tun. Wenn nicht, beendet dieser Link die Anmeldung und verlangt bei den nächsten einen zweiten Faktor: {link} – und ändern Sie Ihr Passwort.",
    ),
    (
        "de",
        "sign_in_refused",
        "Eine Anmeldung bei Ihrem Konto wurde abgelehnt",
        "Jemand hat Ihr Passwort von {address}{place} mit {agent} verwendet und wurde abgelehnt ({reasons}). Wenn Sie das waren, ist nichts zu tun. Wenn nicht, verlangt dieser Link bei Ihren nächsten Anmeldungen einen zweiten Faktor: {link} – und ändern Sie Ihr Passwort.",
    ),
    (
        "de",
        "recovery_started",
        "Ihr Konto wird wiederhergestellt",
        "Jemand hat von {address} aus begonnen, Ihr {product}-Konto wiederherzustellen. Wenn Sie das nicht abbrechen, kann diese Person nach {ready_at} UTC ein neues Passwort setzen oder ein Gerät hinzufügen, und Ihre anderen Sitzungen und Geräte werden abgemeldet. Wenn Sie das nicht waren, brechen Sie es jetzt ab: {link}",
    ),
    (
        "de",
        "recovered_password",
        "Ihr Konto wurde wiederhergestellt",
        "Ihr {product}-Konto wurde von {address} aus wiederhergestellt: Das Passwort wurde geändert, und alle anderen Sitzungen wurden beendet.{older} Wenn Sie das nicht waren, sperren Sie das Konto sofort: {link}",
    ),
    (
        "de",
        "recovered_device",
        "Ihr Konto wurde wiederhergestellt",
        "Ihr {product}-Konto wurde von {address} aus wiederhergestellt: Ein neues Gerät wurde hinzugefügt, und alle anderen Sitzungen wurden beendet.{older} Wenn Sie das nicht waren, sperren Sie das Konto sofort: {link}",
    ),
    ("de", "older_devices_removed", "", " Ältere Geräte wurden entfernt."),
    (
        "de",
        "recovery_cancelled",
        "Eine Kontowiederherstellung wurde abgebrochen",
        "Eine Wiederherstellung Ihres {product}-Kontos wurde abgebrochen. Es wurde nichts geändert. Wenn Sie sie nicht abgebrochen haben, hat es jemand mit Zugriff auf eines Ihrer Geräte oder eine Ihrer Adressen getan.",
    ),
    (
        "de",
        "phone_added",
        "Eine Telefonnummer wurde hinzugefügt",
        "Die Telefonnummer {destination} wurde bestätigt und wird jetzt für Anmeldecodes Ihres Kontos verwendet. Wenn Sie das nicht waren, sperren Sie das Konto: {link}",
    ),
    (
        "de",
        "phone_changed",
        "Ihre Telefonnummer wurde geändert",
        "Die Telefonnummer {destination} wurde bestätigt und wird jetzt für Anmeldecodes Ihres Kontos verwendet. Wenn Sie das nicht waren, sperren Sie das Konto: {link}",
    ),
    (
        "de",
        "email_added",
        "Eine E-Mail-Adresse wurde hinzugefügt",
        "Die E-Mail-Adresse {destination} wurde bestätigt und wird jetzt für Anmeldecodes Ihres Kontos verwendet. Wenn Sie das nicht waren, sperren Sie das Konto: {link}",
    ),
    (
        "de",
        "email_changed",
        "Ihre E-Mail-Adresse wurde geändert",
        "Die E-Mail-Adresse {destination} wurde bestätigt und wird jetzt für Anmeldecodes Ihres Kontos verwendet. Wenn Sie das nicht waren, sperren Sie das Konto: {link}",
    ),
    (
        "de",
        "totp_added",
        "Eine Authenticator-App wurde hinzugefügt",
        "Ihrem Konto wurde eine Authenticator-App als zweiter Faktor hinzugefügt. Wenn Sie das nicht waren, setzen Sie Ihr Passwort zurück und wenden Sie sich an den Support.",
    ),
    (
        "de",
        "passkey_added",
        "Ein Passkey wurde hinzugefügt",
        "Ihrem Konto wurde ein Passkey ({name}) hinzugefügt. Wenn Sie das nicht waren, setzen Sie Ihr Passwort zurück und wenden Sie sich an den Support.",
    ),
    (
        "de",
        "passkey_removed",
        "Ein Passkey wurde entfernt",
        "Ein Passkey ({name}) wurde von Ihrem Konto entfernt. Wenn Sie das nicht waren, setzen Sie Ihr Passwort zurück und wenden Sie sich an den Support.",
    ),
    (
        "de",
        "passkey_cloned",
        "Ein Passkey wurde möglicherweise kopiert",
        "Eine Anmeldung mit Ihrem Passkey ({name}) wurde abgelehnt: Der Zähler seines Authentifikators ging zurück, wie es bei einer Kopie des Schlüssels geschieht. Wenn Sie sich nicht anmelden wollten, entfernen Sie diesen Passkey und wenden Sie sich an den Support.",
    ),
    (
        "de",
        "recovery_codes_new",
        "Neue Wiederherstellungscodes",
        "Für Ihr Konto wurden neue Wiederherstellungscodes erzeugt; die bisherigen gelten nicht mehr. Wenn Sie das nicht waren, setzen Sie Ihr Passwort zurück und wenden Sie sich an den Support.",
    ),
    (
        "de",
        "recovery_code_used",
        "Ein Wiederherstellungscode wurde verwendet",
        "Mit einem Wiederherstellungscode wurde sich bei Ihrem Konto angemeldet. {left} unbenutzte Codes sind übrig; in Ihren Sicherheitseinstellungen können Sie neue erzeugen, dann gelten die alten nicht mehr. Wenn Sie das nicht waren, setzen Sie Ihr Passwort zurück und wenden Sie sich an den Support.",
    ),
    (
        "de",
        "push_reported",
        "Eine fremde Anmeldung wurde gestoppt",
        "Jemand wollte sich bei Ihrem Konto anmelden, und Sie haben auf „{device}“ mit „Das war ich nicht“ geantwortet. Die Anmeldung wurde gestoppt, und Anmeldeanfragen an Ihre Geräte pausieren eine Zeit lang. Wenn jemand Ihr Passwort kennt, ändern Sie es jetzt.",
    ),
    (
        "de",
        "device_added",
        "Ein neues Gerät wurde hinzugefügt",
        "Ein neues Gerät, „{device}“ ({platform}), kann sich jetzt ohne Passwort bei Ihrem Konto anmelden. Wenn Sie das nicht waren, entfernen Sie es: {link}",
    ),
    (
        "de",
        "biometric_replaced",
        "Der biometrische Schlüssel eines Geräts wurde ersetzt",
        "Das Gerät „{device}“ hat einen neuen biometrischen Schlüssel registriert (Fingerabdruck- oder Gesichtseinstellungen wurden geändert). Wenn Sie das nicht waren, entfernen Sie das Gerät aus Ihrem Konto.",
    ),
    ("de", "pin_changed", "Die PIN eines Geräts wurde geändert", "Die App-PIN des Geräts „{device}“ wurde geändert."),
    (
        "de",
        "preferred_mfa",
        "Ihre Anmeldemethode wurde geändert",
        "Bei der Anmeldung wird jetzt zuerst {method} verlangt. Wenn Sie das nicht waren, setzen Sie Ihr Passwort zurück und wenden Sie sich an den Support.",
    ),
];

/// `^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$`, at most 35 characters (a BCP 47 tag's shape).
pub fn check_locale(v: &str) -> Result<(), &'static str> {
    let mut parts = v.split('-');
    let language = parts.next().unwrap_or_default();
    let ok = v.len() <= 35
        && (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if ok { Ok(()) } else { Err("locale: a BCP 47 language tag, like en or de-CH") }
}

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
