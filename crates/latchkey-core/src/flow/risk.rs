//! The risk policy's part of every sign-in and step-up (the policy itself is `crate::risk`):
//! gathering what is assessed (the account's sightings, failure counts, recent changes, the
//! operator's list and GeoIP database), recording the decision (audit log, timeline,
//! `latchkey_risk_decisions_total`), the delay, a refreshed session that moved (checklist
//! SES-8), and what a session leaves behind for the next assessment. The notice of an
//! unfamiliar sign-in is `flows::undo`'s.

use crate::auth::{Auth, audit, secs};
use crate::crypto::sha256_b64;
use crate::error::AuthError;
use crate::ids::{FlowId, UserId};
use crate::model::*;
use crate::risk::{Decision, Observation, Place, decide, network_of, parse_ip, position_e6, signals};
use crate::settings::{MAX_RISK_DELAY_SECS, RiskAction};
use crate::store::{RiskCounts, Write};
use std::net::IpAddr;
use time::OffsetDateTime;

/// The sightings an assessment reads: enough for months of one person's networks.
const SIGHTINGS_READ: u32 = 200;

/// What is being assessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Occasion {
    /// A password sign-in; `remembered`: it names a remembered client.
    Password {
        /// A remembered client was named.
        remembered: bool,
    },
    /// A device's own sign-in (its key is the proof).
    Device,
    /// A passwordless account's first sign-in on a new device (an SMS code and a second proof).
    NewDevice,
    /// A step-up of a live session.
    StepUp,
}

impl Occasion {
    fn as_str(self) -> &'static str {
        match self {
            Occasion::Password { .. } => "password",
            Occasion::Device => "device",
            Occasion::NewDevice => "new_device",
            Occasion::StepUp => "step_up",
        }
    }
}

/// A user agent as the policy compares it: without its digits, so a browser or app that updated
/// itself (`Chrome/131.0` → `Chrome/132.0`) is not a new device, while another browser, app or
/// operating system is.
fn agent_family(user_agent: &str) -> String {
    user_agent.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// A user agent as a sighting keeps it: its family's hash.
fn agent_hash(ctx: &ClientContext) -> Option<String> {
    ctx.user_agent.as_deref().filter(|a| !a.is_empty()).map(|a| sha256_b64(agent_family(a).as_bytes()))
}

impl Auth {
    /// Where an address is, when the operator supplies a GeoIP database.
    pub(crate) fn place_of(&self, ip: Option<&str>) -> Option<Place> {
        let locator = self.risk.locator.as_ref()?;
        locator.locate(parse_ip(ip?)?)
    }

    /// The assessment of a sign-in or step-up of `user` (`None`: a username with no account,
    /// which only the address's signals can concern). Counted in the metric; the caller records
    /// it with [`Auth::risk_record`] in the batch of what it decides.
    pub(crate) async fn assess(
        &self,
        user: Option<&User>,
        occasion: Occasion,
        ctx: &ClientContext,
        now: OffsetDateTime,
    ) -> Result<Decision, AuthError> {
        let policy = &self.settings.risk;
        if !policy.enabled {
            return Ok(Decision::allow());
        }
        let ip: Option<IpAddr> = ctx.ip.as_deref().and_then(parse_ip);
        let place = self.place_of(ctx.ip.as_deref());
        let since = now - secs(policy.failure_window_secs);
        // An unknown username is assessed with the same queries, for an id no account has: the
        // answer must take as long as for an account (checklist RL-6), or timing names accounts.
        let id = user.map_or(UserId(uuid::Uuid::nil()), |u| u.id);
        let changed_since = now - secs(policy.recent_change_secs);
        // A device's own sign-in heeds only `deny`: its key is already two factors and cannot be
        // guessed, so a second factor or a delay would add nothing. What only other decisions
        // use is not read for it (a device sign-in is the cheapest sign-in there is).
        let device = occasion == Occasion::Device;
        let denies = |signals: &[&str]| signals.iter().any(|s| policy.rules.action(s) == RiskAction::Deny);
        let counts = if !device || denies(&["account_failures", "source_failures", "recent_change", "recent_report"]) {
            self.store.risk_counts(id, ctx.ip.as_deref(), since, changed_since).await?
        } else {
            RiskCounts::default()
        };
        let sightings = if !device || denies(&["new_network", "new_country", "impossible_travel"]) {
            self.store.sightings(id, SIGHTINGS_READ).await?
        } else {
            vec![]
        };
        let changed = user
            .is_some_and(|u| [u.phone_changed_at, u.email_changed_at].into_iter().flatten().any(|t| t > changed_since));
        let recent_change = changed || counts.recovered_at.is_some();
        // A recovery after the report settles it: it took two proofs or a wait.
        let recent_report = counts.reported_at.is_some_and(|r| counts.recovered_at.is_none_or(|c| r > c));
        let agent = agent_hash(ctx);
        let observation = Observation {
            ip,
            place: place.as_ref(),
            agent: agent.as_deref(),
            now,
            sightings: &sightings,
            account_failures: counts.account_failures,
            source_failures: counts.source_failures,
            recent_change,
            recent_report,
            known_client: !matches!(occasion, Occasion::Password { remembered: false }),
        };
        let mut decision = decide(&signals(&observation, policy, &self.risk.distrusted), policy);
        if device {
            decision.delay = false;
            if decision.action != RiskAction::Deny {
                decision.action = RiskAction::Allow;
            }
        }
        let name = decision.name();
        if decision.reasons.is_empty() {
            metrics::counter!("latchkey_risk_decisions_total", "decision" => name, "reason" => "none").increment(1);
        }
        for reason in &decision.reasons {
            metrics::counter!("latchkey_risk_decisions_total", "decision" => name, "reason" => *reason).increment(1);
        }
        Ok(decision)
    }

    /// The audit event of a decision that had reasons (an `allow` with none is only counted):
    /// kind `risk`, outcome the decision, detail the reasons and what was assessed.
    pub(crate) fn risk_record(
        &self,
        decision: &Decision,
        occasion: Occasion,
        user: Option<UserId>,
        flow_id: Option<FlowId>,
        ctx: &ClientContext,
        now: OffsetDateTime,
    ) -> Option<Write> {
        (!decision.reasons.is_empty()).then(|| {
            audit(
                now,
                user,
                "risk",
                decision.name(),
                ctx,
                serde_json::json!({"reasons": decision.reasons, "step": occasion.as_str(), "flow_id": flow_id}),
            )
        })
    }

    /// Hold the answer when the decision says `delay` (on the real clock: a tarpit slows the
    /// client, whatever time the server's clock says).
    pub(crate) async fn risk_delay(&self, decision: &Decision) {
        if decision.delay {
            let secs = self.settings.risk.delay_secs.min(MAX_RISK_DELAY_SECS);
            tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
        }
    }

    /// Checklist SES-8 at a refresh: a session refreshed from another network (IPv4 /24, IPv6
    /// /48) or with another user agent than the one it runs on needs a step-up before its next
    /// sensitive call (the step-up records where it runs now). A device's session is exempt: its
    /// tokens work only with the device's key, wherever the phone roams. The writes: the flag
    /// and its `risk` event, the first time only.
    pub(crate) fn moved_session(&self, session: &Session, ctx: &ClientContext, now: OffsetDateTime) -> Vec<Write> {
        if !self.settings.risk.enabled
            || !self.settings.risk.refresh_step_up
            || session.dpop_jkt.is_some()
            || session.step_up_required_at.is_some()
        {
            return vec![];
        }
        let net = |ip: Option<&str>| ip.and_then(parse_ip).map(network_of);
        let mut reasons = vec![];
        if let (Some(was), Some(now_on)) = (net(session.context.ip.as_deref()), net(ctx.ip.as_deref()))
            && was != now_on
        {
            reasons.push("new_network");
        }
        if let (Some(was), Some(now_on)) = (&session.context.user_agent, &ctx.user_agent)
            && agent_family(was) != agent_family(now_on)
        {
            reasons.push("new_device");
        }
        if reasons.is_empty() {
            return vec![];
        }
        for reason in &reasons {
            metrics::counter!("latchkey_risk_decisions_total", "decision" => "require_step_up", "reason" => *reason)
                .increment(1);
        }
        vec![
            Write::RequireStepUp { id: session.id, at: now },
            audit(
                now,
                Some(session.user_id),
                "risk",
                "require_step_up",
                ctx,
                serde_json::json!({"reasons": reasons, "step": "refresh", "session_id": session.id}),
            ),
        ]
    }

    /// What a new session leaves for the next assessment: its network (with the place) and its
    /// user agent, seen now.
    pub(crate) fn sightings_of(&self, user: UserId, ctx: &ClientContext, now: OffsetDateTime) -> Vec<Write> {
        if !self.settings.risk.enabled {
            return vec![];
        }
        let mut seen = vec![];
        if let Some(ip) = ctx.ip.as_deref().and_then(parse_ip) {
            let place = self.place_of(ctx.ip.as_deref());
            seen.push(Sighting {
                user_id: user,
                kind: "network".into(),
                value: network_of(ip),
                country: place.as_ref().and_then(|p| p.country.clone()),
                position_e6: place.as_ref().and_then(position_e6),
                first_seen_at: now,
                last_seen_at: now,
            });
        }
        if let Some(agent) = agent_hash(ctx) {
            seen.push(Sighting {
                user_id: user,
                kind: "agent".into(),
                value: agent,
                country: None,
                position_e6: None,
                first_seen_at: now,
                last_seen_at: now,
            });
        }
        if seen.is_empty() { vec![] } else { vec![Write::Sightings(seen)] }
    }
}

#[cfg(test)]
mod tests {
    use super::agent_family;

    #[test]
    fn an_updated_browser_is_the_same_family_and_another_browser_is_not() {
        let chrome = |v: &str| format!("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/{v} Safari/537.36");
        assert_eq!(agent_family(&chrome("131.0.0.0")), agent_family(&chrome("132.0.6834.83")));
        assert_ne!(
            agent_family(&chrome("131.0.0.0")),
            agent_family("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Firefox/133.0")
        );
        assert_ne!(agent_family("MyApp/2.1 (iPhone)"), agent_family("MyApp/2.1 (Android)"));
    }
}
