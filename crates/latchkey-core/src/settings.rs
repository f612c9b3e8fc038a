//! The domain's policy numbers, with their defaults and the standard each one follows.
//! The server embeds this in its configuration (`[policy]`, `[limits]`, `[tokens]`).

use crate::model::LockoutPolicy;
use latchkey_proto::MfaMethod;
use serde::{Deserialize, Serialize};

/// Everything the domain needs to decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Token issuing.
    pub tokens: TokenSettings,
    /// Flow and code lifetimes and attempt caps.
    pub flows: FlowSettings,
    /// Sign-up policy.
    pub sign_up: SignUpPolicy,
    /// Lockout and send limits.
    pub limits: Limits,
    /// Second factors: whether sign-in asks for one, which methods, what they are worth.
    pub mfa: MfaPolicy,
    /// Device keys.
    pub devices: DevicePolicy,
    /// Push approval.
    pub push: PushPolicy,
    /// Account recovery.
    pub recovery: RecoveryPolicy,
    /// Remembered clients ("remember this device").
    pub remember: RememberPolicy,
    /// Passkeys: the relying party, its web origins and apps (`[policy.passkeys]`; off without
    /// `rp_id`).
    pub passkeys: crate::factors::passkey::PasskeyPolicy,
    /// Which requests need proof of the operator's genuine app, and how it is checked
    /// (`[policy.app_integrity]`).
    pub app_integrity: crate::factors::app_integrity::AppIntegrityPolicy,
    /// Risk-based decisions at sign-in and step-up.
    pub risk: RiskPolicy,
    /// Admin accounts' sessions.
    pub admin: AdminPolicy,
    /// Custom attributes of accounts (`[[policy.attributes]]`).
    pub attributes: Vec<crate::attributes::AttributeDecl>,
    /// The language of messages to users without a `locale` (default `en`).
    pub default_locale: String,
    /// The operator's message texts, per locale and message id (`[policy.messages.<locale>.<id>]`).
    pub messages: crate::messages::Overrides,
    /// The product name in messages and (later) authenticator labels.
    pub product_name: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            tokens: TokenSettings::default(),
            flows: FlowSettings::default(),
            sign_up: SignUpPolicy::default(),
            limits: Limits::default(),
            mfa: MfaPolicy::default(),
            devices: DevicePolicy::default(),
            push: PushPolicy::default(),
            recovery: RecoveryPolicy::default(),
            remember: RememberPolicy::default(),
            passkeys: Default::default(),
            app_integrity: Default::default(),
            risk: RiskPolicy::default(),
            admin: AdminPolicy::default(),
            attributes: vec![],
            default_locale: "en".into(),
            messages: Default::default(),
            product_name: "Latchkey".into(),
        }
    }
}

/// Token lifetimes and names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenSettings {
    /// `iss` of access tokens; also the base of the OpenID configuration.
    pub issuer: String,
    /// `aud` of access tokens: the APIs that accept them.
    pub audience: String,
    /// Access-token lifetime (default 600 s).
    pub access_ttl_secs: u64,
    /// A session ends this long after sign-in whatever happens (default 30 days).
    pub session_absolute_ttl_secs: u64,
    /// A session ends if not refreshed for this long (default 7 days).
    pub session_idle_ttl_secs: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080".into(),
            audience: "latchkey".into(),
            access_ttl_secs: 600,
            session_absolute_ttl_secs: 30 * 24 * 3600,
            session_idle_ttl_secs: 7 * 24 * 3600,
        }
    }
}

/// Flow lifetimes and caps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlowSettings {
    /// A flow without a code expires after this (default 300 s).
    pub ttl_secs: u64,
    /// A code expires after this, and so does its flow (default 600 s; NIST §3.1.3.2 and
    /// ASVS 6.5.5 allow at most 10 minutes).
    pub code_ttl_secs: u64,
    /// Wrong answers per flow before it is denied (default 5; checklist OOB-3).
    pub max_attempts: u32,
    /// Codes sent per flow, first one included (default 5).
    pub max_sends: u32,
}

impl Default for FlowSettings {
    fn default() -> Self {
        Self { ttl_secs: 300, code_ttl_secs: 600, max_attempts: 5, max_sends: 5 }
    }
}

/// Who may sign up with what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SignUpPolicy {
    /// Require an email address (default true; it receives the confirmation code).
    pub require_email: bool,
    /// Require a phone number (default false).
    pub require_phone: bool,
    /// Require a password (default false: without one, a phone is required and the sign-up enrols
    /// the first device).
    pub require_password: bool,
    /// Answer `username_exists` to a sign-up with a taken username (default false: the answer
    /// looks like a normal sign-up, so usernames cannot be enumerated — checklist RL-5).
    pub reveal_username_exists: bool,
    /// Days a deleted account's username stays taken (default 30): whoever deleted an account
    /// by mistake, or had it deleted by someone else, can still reclaim it through the operator,
    /// and no newcomer inherits what others still send to that name.
    pub username_quarantine_days: u32,
    /// How long an operator's invitation can be accepted (seconds; default 7 days).
    pub invite_ttl_secs: u64,
    /// Where an invitation's link points; the flow id and code follow in the fragment
    /// (`#flow_id=…&code=…`). Default: the console's invitation page, `{issuer}/console/invite`.
    pub invite_url: Option<String>,
}

impl Default for SignUpPolicy {
    fn default() -> Self {
        Self {
            require_email: true,
            require_phone: false,
            require_password: false,
            reveal_username_exists: false,
            username_quarantine_days: 30,
            invite_ttl_secs: 7 * 24 * 3600,
            invite_url: None,
        }
    }
}

/// Lockouts and send limits, all enforced in the database so replicas share them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Password failures per account (keyed by canonical username, existing or not): 5 free,
    /// then 1 s doubling to 15 min, and none evaluated after 50 until a password reset
    /// (NIST §3.2.2: at most 100 consecutive failures).
    pub password: LockoutPolicy,
    /// Wrong codes per account across flows: 10 free, then 1 s doubling to 15 min, hard cap 100.
    pub code: LockoutPolicy,
    /// The window of the send limits (default 900 s).
    pub send_window_secs: u64,
    /// Codes sent per account per window (default 5; checklist OOB-5).
    pub sends_per_account: u32,
    /// Codes sent per destination address or number per window (default 5).
    pub sends_per_destination: u32,
    /// Codes sent per client IP per window (default 20).
    pub sends_per_ip: u32,
    /// Text messages per UTC day for the whole server (SMS-pumping cost control; default 1000).
    pub sms_daily_budget: u32,
    /// Text messages per UTC day one client IP may cause (default 30), so no single client can
    /// spend the server's daily budget.
    pub sms_daily_per_ip: u32,
    /// Phone-number prefixes text messages may go to (`["+1", "+44"]`); empty: every number.
    /// Numbers elsewhere are refused at sign-up and factor enrolment and never texted.
    pub sms_allowed_prefixes: Vec<String>,
}

impl Limits {
    /// Whether text messages may go to this E.164 number.
    pub fn sms_allowed(&self, phone: &str) -> bool {
        self.sms_allowed_prefixes.is_empty() || self.sms_allowed_prefixes.iter().any(|p| phone.starts_with(p.trim()))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            password: LockoutPolicy {
                free_attempts: 5,
                base_delay_secs: 1,
                max_delay_secs: 900,
                hard_cap: 50,
                forget_after_secs: 30 * 24 * 3600,
            },
            code: LockoutPolicy {
                free_attempts: 10,
                base_delay_secs: 1,
                max_delay_secs: 900,
                hard_cap: 100,
                forget_after_secs: 30 * 24 * 3600,
            },
            send_window_secs: 900,
            sends_per_account: 5,
            sends_per_destination: 5,
            sends_per_ip: 20,
            sms_daily_budget: 1000,
            sms_daily_per_ip: 30,
            sms_allowed_prefixes: vec![],
        }
    }
}

/// Whether sign-in asks for a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MfaMode {
    /// Never: sign-in ends after the password and no factor can be added.
    Off,
    /// Per user: accounts with a factor are asked for it.
    Optional,
    /// Every account: accounts without a factor set one up inside the sign-in (`setup_totp`).
    Required,
}

/// Second-factor policy (`[policy.mfa]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MfaPolicy {
    /// `off`, `optional` (default) or `required`.
    pub mode: MfaMode,
    /// The methods sign-in may offer, in the default order (`passkey`, `totp`, `push_approval`,
    /// `sms`, `email`, `recovery_code`).
    pub methods: Vec<MfaMethod>,
    /// With `mode = "required"`, users without a factor may verify a phone for SMS instead of
    /// adding an authenticator app (NIST SP 800-63B-4 treats SMS as restricted; default off).
    pub allow_sms_setup: bool,
    /// The account must use a phishing-resistant authenticator (checklist FLOW-5, OOB-6 L3):
    /// TOTP, SMS, email and recovery codes no longer make a session `aal2`, and SMS is not offered.
    pub require_phishing_resistant: bool,
    /// Adding, changing or removing a factor needs a sign-in this recent (seconds).
    pub step_up_max_age_secs: u64,
}

impl Default for MfaPolicy {
    fn default() -> Self {
        Self {
            mode: MfaMode::Optional,
            methods: vec![
                MfaMethod::Passkey,
                MfaMethod::Totp,
                MfaMethod::PushApproval,
                MfaMethod::Sms,
                MfaMethod::Email,
                MfaMethod::RecoveryCode,
            ],
            allow_sms_setup: false,
            require_phishing_resistant: false,
            step_up_max_age_secs: 600,
        }
    }
}

impl MfaPolicy {
    /// Whether sign-in may offer `m`.
    pub fn allows(&self, m: MfaMethod) -> bool {
        self.mode != MfaMode::Off
            && self.methods.contains(&m)
            && !(m == MfaMethod::Sms && self.require_phishing_resistant)
    }
}

/// Device-key policy (`[policy.devices]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DevicePolicy {
    /// What a first sign-in on a new device may use as the proof after the SMS code (SMS proves
    /// a number, never a device): `email` (a code to the verified address), `totp`,
    /// `recovery_code`.
    pub second_proofs: Vec<MfaMethod>,
    /// Trusted Android Key Attestation roots: PEM certificates (in production Google's, from
    /// <https://android.googleapis.com/attestation/root>), or paths to PEM files, which the
    /// server reads when it loads its configuration. Empty: attestations are not evaluated and
    /// a biometric-key sign-in counts as possession only (`aal1`).
    pub android_attestation_roots: Vec<String>,
}

impl Default for DevicePolicy {
    fn default() -> Self {
        Self {
            second_proofs: vec![
                MfaMethod::PushApproval,
                MfaMethod::Passkey,
                MfaMethod::Email,
                MfaMethod::Totp,
                MfaMethod::RecoveryCode,
            ],
            android_attestation_roots: vec![],
        }
    }
}

/// Remembered clients (`[policy.remember]`; checklist SES-9): a client's key that lets a
/// password sign-in skip the second factor for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RememberPolicy {
    /// Whether clients may be remembered at all.
    pub enabled: bool,
    /// How long a client stays remembered, however often it is used (seconds; default 30 days).
    pub max_age_secs: u64,
    /// The most clients an account keeps remembered; remembering one more forgets the oldest.
    pub max_per_account: u32,
}

impl Default for RememberPolicy {
    fn default() -> Self {
        Self { enabled: true, max_age_secs: 30 * 24 * 3600, max_per_account: 10 }
    }
}

/// Admin accounts (people with an admin role, signed in through the normal flows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminPolicy {
    /// How long after its sign-in (`auth_time`) an admin's session may use the admin API
    /// (seconds; default 8 hours); after that, sign in again — refreshing does not extend it.
    pub session_max_age_secs: u64,
}

impl Default for AdminPolicy {
    fn default() -> Self {
        Self { session_max_age_secs: 8 * 3600 }
    }
}

/// What the risk policy does about a signal (`[policy.risk.rules]`), weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskAction {
    /// Nothing beyond recording (and notifying, when the signal is in `notify`).
    Allow,
    /// Answer only after `delay_secs`.
    Delay,
    /// Ask for a second factor, even where a remembered client or an MFA-optional policy would
    /// skip it.
    RequireSecondFactor,
    /// Ask for a phishing-resistant factor (a push approval signed by an enrolled device's key).
    RequirePhishingResistant,
    /// Refuse.
    Deny,
}

/// The decision for each signal (`[policy.risk.rules]`; docs/adaptive.md explains each default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskRules {
    /// The address is on the operator's list (`ip_reputation_file`).
    pub ip_reputation: RiskAction,
    /// Not from a network (IPv4 /24, IPv6 /48) this account signed in from before.
    pub new_network: RiskAction,
    /// A user agent this account never signed in with, and no remembered client.
    pub new_device: RiskAction,
    /// GeoIP: a country this account never signed in from.
    pub new_country: RiskAction,
    /// GeoIP: farther from the last sign-in's place than `max_travel_kmh` allows in the time.
    pub impossible_travel: RiskAction,
    /// At least `account_failures` failed password sign-ins of this account in the window.
    pub account_failures: RiskAction,
    /// At least `source_failures` failed password sign-ins from this address, any account.
    pub source_failures: RiskAction,
    /// The account was recovered or changed its phone or email within `recent_change_secs`.
    pub recent_change: RiskAction,
    /// The account's owner said "this wasn't me" (to a notice, or cancelling a recovery)
    /// within `recent_change_secs`.
    pub recent_report: RiskAction,
}

impl Default for RiskRules {
    fn default() -> Self {
        Self {
            ip_reputation: RiskAction::Deny,
            new_network: RiskAction::Allow,
            new_device: RiskAction::Allow,
            new_country: RiskAction::RequireSecondFactor,
            impossible_travel: RiskAction::RequireSecondFactor,
            account_failures: RiskAction::RequireSecondFactor,
            source_failures: RiskAction::Delay,
            recent_change: RiskAction::Allow,
            recent_report: RiskAction::RequireSecondFactor,
        }
    }
}

impl RiskRules {
    /// The action for a signal by its name.
    pub fn action(&self, signal: &str) -> RiskAction {
        match signal {
            "ip_reputation" => self.ip_reputation,
            "new_network" => self.new_network,
            "new_device" => self.new_device,
            "new_country" => self.new_country,
            "impossible_travel" => self.impossible_travel,
            "account_failures" => self.account_failures,
            "source_failures" => self.source_failures,
            "recent_change" => self.recent_change,
            "recent_report" => self.recent_report,
            _ => RiskAction::Allow,
        }
    }
}

/// Risk-based decisions (`[policy.risk]`): the signals Latchkey computes at every password
/// sign-in, device sign-in and step-up, and what each leads to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RiskPolicy {
    /// Whether sign-ins are assessed at all (off: every decision is `allow`, nothing recorded).
    pub enabled: bool,
    /// A file of networks to distrust, one CIDR (`203.0.113.0/24`, `2001:db8::/32`) or address
    /// per line, `#` comments; read at start-up.
    pub ip_reputation_file: Option<String>,
    /// A MaxMind DB (GeoLite2-City or -Country, or a compatible file): places in the timeline,
    /// and the `new_country` and `impossible_travel` signals. Read at start-up.
    pub geoip_file: Option<String>,
    /// The window failures are counted in (seconds; default 15 minutes).
    pub failure_window_secs: u64,
    /// Failed password sign-ins of one account in the window that raise `account_failures`.
    pub account_failures: u32,
    /// Failed password sign-ins from one address in the window that raise `source_failures`.
    pub source_failures: u32,
    /// How long a recovery or a phone or email change raises `recent_change`, and a "this
    /// wasn't me" `recent_report` (seconds; default 7 days).
    pub recent_change_secs: u64,
    /// Faster than this between two sign-ins' places is `impossible_travel` (km/h; default
    /// 1000, an airliner). Places closer than 300 km never are (GeoIP is that coarse).
    pub max_travel_kmh: u32,
    /// How long `delay` holds the answer (seconds; at most 10).
    pub delay_secs: u64,
    /// A session refreshed from another network or user agent than its own needs a step-up
    /// before its next sensitive call (checklist SES-8; device sessions are exempt).
    pub refresh_step_up: bool,
    /// The decision for each signal.
    pub rules: RiskRules,
    /// The signals that send the owner a notice with a one-tap "this wasn't me".
    pub notify: Vec<String>,
    /// The signals that forget the remembered client a sign-in named (its key is in use
    /// somewhere it should not be).
    pub forget_remembered_client: Vec<String>,
}

/// The longest `delay` (seconds): a held answer costs a connection, not the attacker.
pub const MAX_RISK_DELAY_SECS: u64 = 10;

/// Every signal, by the name the policy, the audit log, the timeline and the metric use.
pub const RISK_SIGNALS: [&str; 9] = [
    "ip_reputation",
    "new_network",
    "new_device",
    "new_country",
    "impossible_travel",
    "account_failures",
    "source_failures",
    "recent_change",
    "recent_report",
];

impl Default for RiskPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            ip_reputation_file: None,
            geoip_file: None,
            failure_window_secs: 900,
            account_failures: 10,
            source_failures: 20,
            recent_change_secs: 7 * 24 * 3600,
            max_travel_kmh: 1000,
            delay_secs: 3,
            refresh_step_up: true,
            rules: RiskRules::default(),
            notify: ["new_network", "new_device", "new_country", "impossible_travel", "ip_reputation"]
                .map(String::from)
                .to_vec(),
            forget_remembered_client: ["impossible_travel", "ip_reputation"].map(String::from).to_vec(),
        }
    }
}

/// Push approval (`[policy.push]`; checklist PUSH-3, PUSH-4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PushPolicy {
    /// How long the phone may answer (seconds; at most 600).
    pub approval_ttl_secs: u64,
    /// Approvals an account may be asked per window (besides one outstanding at a time).
    pub max_per_window: u32,
    /// The window (seconds).
    pub window_secs: u64,
    /// After "this wasn't me", no push prompts for the account for this long (seconds; at most
    /// a day).
    pub report_lock_secs: u64,
}

impl Default for PushPolicy {
    fn default() -> Self {
        Self { approval_ttl_secs: 120, max_per_window: 5, window_secs: 900, report_lock_secs: 3600 }
    }
}

/// Account recovery (`[policy.recovery]`; DESIGN.md, "Recovery obeys the same rule as sign-in").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecoveryPolicy {
    /// A recovery with one proof waits this long, while every device and verified address of
    /// the account is told and may cancel it (default 72 hours: a weekend away from email).
    pub delay_secs: u64,
    /// After the wait, the recovery may be completed for this long (default 24 hours).
    pub ready_for_secs: u64,
    /// After the phone number changes or an SMS factor is added, SMS is not a sign-in factor,
    /// a new device's first step, or a recovery channel for this long (default 7 days).
    pub phone_change_cooldown_secs: u64,
    /// After the email address changes, it is not a recovery channel for this long (default
    /// 7 days).
    pub email_change_cooldown_secs: u64,
    /// How long the "this wasn't me" link of a security notice works (default 7 days).
    pub notice_link_ttl_secs: u64,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        Self {
            delay_secs: 72 * 3600,
            ready_for_secs: 24 * 3600,
            phone_change_cooldown_secs: 7 * 24 * 3600,
            email_change_cooldown_secs: 7 * 24 * 3600,
            notice_link_ttl_secs: 7 * 24 * 3600,
        }
    }
}
