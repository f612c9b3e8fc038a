//! Reading records back: one decoder per table, from a row of either backend to the domain's
//! record (and from a row of SQLite's writer connection, read directly: `direct.rs`). A value the
//! domain cannot read is `StoreError::Corrupt`, never a panic.

macro_rules! store_rows {
    ($name:ident, $row:ty $(, #[$attr:meta])*) => {
        $(#[$attr])*
        impl $name {
            pub(super) fn user(r: &$row) -> Result<User, StoreError> {
                let status: String = r.try_get("status").map_err(db_err)?;
                Ok(User {
                    id: UserId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    username: r.try_get("username").map_err(db_err)?,
                    username_canonical: r.try_get("username_canonical").map_err(db_err)?,
                    email: r.try_get("email").map_err(db_err)?,
                    email_verified: r.try_get("email_verified").map_err(db_err)?,
                    phone: r.try_get("phone").map_err(db_err)?,
                    phone_verified: r.try_get("phone_verified").map_err(db_err)?,
                    status: UserStatus::parse(&status).ok_or_else(|| corrupt("user status"))?,
                    password_hash: r.try_get("password_hash").map_err(db_err)?,
                    must_change_password: r.try_get("must_change_password").map_err(db_err)?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    updated_at: from_us(r.try_get("updated_at").map_err(db_err)?)?,
                    preferred_mfa: r
                        .try_get::<Option<String>, _>("preferred_mfa")
                        .map_err(db_err)?
                        .as_deref()
                        .map(mfa_method)
                        .transpose()?,
                    phone_changed_at: opt_us(r.try_get("phone_changed_at").map_err(db_err)?)?,
                    email_changed_at: opt_us(r.try_get("email_changed_at").map_err(db_err)?)?,
                    profile: Profile {
                        name: r.try_get("name").map_err(db_err)?,
                        locale: r.try_get("locale").map_err(db_err)?,
                        zoneinfo: r.try_get("zoneinfo").map_err(db_err)?,
                        picture: r.try_get("picture").map_err(db_err)?,
                        custom: match r.try_get::<Option<String>, _>("attributes").map_err(db_err)? {
                            Some(j) => serde_json::from_str(&j).map_err(|_| corrupt("user attributes"))?,
                            None => Default::default(),
                        },
                    },
                })
            }

            /// A refresh token's session, and whether the token is spent.
            pub(super) fn refresh_token_row(r: &$row) -> Result<(SessionId, bool), StoreError> {
                let used: Option<i64> = r.try_get("used_at").map_err(db_err)?;
                Ok((SessionId(r.try_get::<Uuid, _>("session_id").map_err(db_err)?), used.is_some()))
            }

            pub(super) fn flow(r: &$row) -> Result<Flow, StoreError> {
                let kind: String = r.try_get("kind").map_err(db_err)?;
                let state: String = r.try_get("state").map_err(db_err)?;
                Ok(Flow {
                    id: FlowId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    kind: kind_of(&kind)?,
                    user_id: r.try_get::<Option<Uuid>, _>("user_id").map_err(db_err)?.map(UserId),
                    state: serde_json::from_str(&state).map_err(|_| corrupt("flow state"))?,
                    attempts: n32(r.try_get("attempts").map_err(db_err)?),
                    sends: n32(r.try_get("sends").map_err(db_err)?),
                    version: r.try_get("version").map_err(db_err)?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    expires_at: from_us(r.try_get("expires_at").map_err(db_err)?)?,
                    context: ClientContext {
                        ip: r.try_get("ip").map_err(db_err)?,
                        user_agent: r.try_get("user_agent").map_err(db_err)?,
                        app_integrity: None,
                    },
                })
            }

            pub(super) fn session(r: &$row) -> Result<Session, StoreError> {
                let amr: String = r.try_get("amr").map_err(db_err)?;
                Ok(Session {
                    id: SessionId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    user_id: UserId(r.try_get::<Uuid, _>("user_id").map_err(db_err)?),
                    acr: r.try_get("acr").map_err(db_err)?,
                    amr: serde_json::from_str(&amr).map_err(|_| corrupt("amr"))?,
                    auth_time: from_us(r.try_get("auth_time").map_err(db_err)?)?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    last_refresh_at: from_us(r.try_get("last_refresh_at").map_err(db_err)?)?,
                    expires_at: from_us(r.try_get("expires_at").map_err(db_err)?)?,
                    revoked_at: opt_us(r.try_get("revoked_at").map_err(db_err)?)?,
                    revoke_reason: r.try_get("revoke_reason").map_err(db_err)?,
                    context: ClientContext {
                        ip: r.try_get("ip").map_err(db_err)?,
                        user_agent: r.try_get("user_agent").map_err(db_err)?,
                        app_integrity: None,
                    },
                    device_id: r.try_get::<Option<Uuid>, _>("device_id").map_err(db_err)?.map(DeviceId),
                    dpop_jkt: r.try_get("dpop_jkt").map_err(db_err)?,
                    flow_id: r.try_get::<Option<Uuid>, _>("flow_id").map_err(db_err)?.map(FlowId),
                    step_up_required_at: opt_us(r.try_get("step_up_required_at").map_err(db_err)?)?,
                })
            }

            pub(super) fn sighting(r: &$row) -> Result<Sighting, StoreError> {
                let lat: Option<i64> = r.try_get("latitude_e6").map_err(db_err)?;
                let lon: Option<i64> = r.try_get("longitude_e6").map_err(db_err)?;
                Ok(Sighting {
                    user_id: UserId(r.try_get::<Uuid, _>("user_id").map_err(db_err)?),
                    kind: r.try_get("kind").map_err(db_err)?,
                    value: r.try_get("value").map_err(db_err)?,
                    country: r.try_get("country").map_err(db_err)?,
                    position_e6: lat.zip(lon),
                    first_seen_at: from_us(r.try_get("first_seen_at").map_err(db_err)?)?,
                    last_seen_at: from_us(r.try_get("last_seen_at").map_err(db_err)?)?,
                })
            }

            pub(super) fn approval(r: &$row) -> Result<Approval, StoreError> {
                let status: String = r.try_get("status").map_err(db_err)?;
                Ok(Approval {
                    id: ApprovalId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    user_id: UserId(r.try_get::<Uuid, _>("user_id").map_err(db_err)?),
                    flow_id: FlowId(r.try_get::<Uuid, _>("flow_id").map_err(db_err)?),
                    kind: r.try_get("kind").map_err(db_err)?,
                    number: r.try_get("number").map_err(db_err)?,
                    nonce: r.try_get("nonce").map_err(db_err)?,
                    status: ApprovalStatus::parse(&status).ok_or_else(|| corrupt("approval status"))?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    expires_at: from_us(r.try_get("expires_at").map_err(db_err)?)?,
                    decided_at: opt_us(r.try_get("decided_at").map_err(db_err)?)?,
                    device_id: r.try_get::<Option<Uuid>, _>("device_id").map_err(db_err)?.map(DeviceId),
                    context: ClientContext {
                        ip: r.try_get("ip").map_err(db_err)?,
                        user_agent: r.try_get("user_agent").map_err(db_err)?,
                        app_integrity: None,
                    },
                    action: r
                        .try_get::<Option<String>, _>("action")
                        .map_err(db_err)?
                        .map(|s| serde_json::from_str(&s).map_err(|_| corrupt("approval action")))
                        .transpose()?,
                })
            }

            pub(super) fn app_attest_key_row(r: &$row) -> Result<AppAttestKey, StoreError> {
                Ok(AppAttestKey {
                    key_id: r.try_get("key_id").map_err(db_err)?,
                    app_id: r.try_get("app_id").map_err(db_err)?,
                    public_key: r.try_get("public_key").map_err(db_err)?,
                    counter: u32::try_from(r.try_get::<i64, _>("counter").map_err(db_err)?)
                        .map_err(|_| corrupt("app attest counter"))?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    last_used_at: opt_us(r.try_get("last_used_at").map_err(db_err)?)?,
                })
            }

            pub(super) fn passkey(r: &$row) -> Result<Passkey, StoreError> {
                Ok(Passkey {
                    id: PasskeyId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    user_id: UserId(r.try_get::<Uuid, _>("user_id").map_err(db_err)?),
                    credential_id: r.try_get("credential_id").map_err(db_err)?,
                    name: r.try_get("name").map_err(db_err)?,
                    aaguid: r.try_get("aaguid").map_err(db_err)?,
                    credential: r.try_get("credential").map_err(db_err)?,
                    sign_count: u32::try_from(r.try_get::<i64, _>("sign_count").map_err(db_err)?)
                        .map_err(|_| corrupt("passkey counter"))?,
                    backup_eligible: r.try_get("backup_eligible").map_err(db_err)?,
                    backed_up: r.try_get("backed_up").map_err(db_err)?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    last_used_at: opt_us(r.try_get("last_used_at").map_err(db_err)?)?,
                })
            }

            pub(super) fn remembered(r: &$row) -> Result<RememberedClient, StoreError> {
                Ok(RememberedClient {
                    id: RememberedClientId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    user_id: UserId(r.try_get::<Uuid, _>("user_id").map_err(db_err)?),
                    public_key: r.try_get("public_key").map_err(db_err)?,
                    name: r.try_get("name").map_err(db_err)?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    expires_at: from_us(r.try_get("expires_at").map_err(db_err)?)?,
                    last_used_at: opt_us(r.try_get("last_used_at").map_err(db_err)?)?,
                    revoked_at: opt_us(r.try_get("revoked_at").map_err(db_err)?)?,
                    revoke_reason: r.try_get("revoke_reason").map_err(db_err)?,
                })
            }

            pub(super) fn device(r: &$row) -> Result<Device, StoreError> {
                let key = |col: &str| -> Result<Vec<u8>, StoreError> {
                    let text: String = r.try_get(col).map_err(db_err)?;
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| corrupt("device key"))
                };
                Ok(Device {
                    id: DeviceId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    user_id: UserId(r.try_get::<Uuid, _>("user_id").map_err(db_err)?),
                    name: r.try_get("name").map_err(db_err)?,
                    platform: r.try_get("platform").map_err(db_err)?,
                    possession_key: key("possession_key")?,
                    biometric_key: key("biometric_key")?,
                    biometric_evidence: r
                        .try_get::<Option<String>, _>("biometric_evidence")
                        .map_err(db_err)?
                        .map(|j| serde_json::from_str(&j).map_err(|_| corrupt("biometric evidence")))
                        .transpose()?,
                    push: match (
                        r.try_get::<Option<String>, _>("push_provider").map_err(db_err)?,
                        r.try_get::<Option<String>, _>("push_token").map_err(db_err)?,
                    ) {
                        (Some(provider), Some(token)) => Some(PushAddress { provider, token }),
                        _ => None,
                    },
                    pin_hash: r.try_get("pin_hash").map_err(db_err)?,
                    pin_failures: n32(r.try_get("pin_failures").map_err(db_err)?),
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    last_used_at: opt_us(r.try_get("last_used_at").map_err(db_err)?)?,
                    revoked_at: opt_us(r.try_get("revoked_at").map_err(db_err)?)?,
                })
            }

            pub(super) fn factor(r: &$row) -> Result<Factor, StoreError> {
                Ok(Factor {
                    id: FactorId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    user_id: UserId(r.try_get::<Uuid, _>("user_id").map_err(db_err)?),
                    kind: r.try_get("kind").map_err(db_err)?,
                    state: r.try_get("state").map_err(db_err)?,
                    secret_sealed: r.try_get("secret_sealed").map_err(db_err)?,
                    last_step: r.try_get("last_step").map_err(db_err)?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    last_used_at: opt_us(r.try_get("last_used_at").map_err(db_err)?)?,
                })
            }

            pub(super) fn message(r: &$row) -> Result<OutboxMessage, StoreError> {
                let status: String = r.try_get("status").map_err(db_err)?;
                Ok(OutboxMessage {
                    id: MessageId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    channel: r.try_get("channel").map_err(db_err)?,
                    provider: r.try_get("provider").map_err(db_err)?,
                    to: r.try_get("recipient").map_err(db_err)?,
                    subject: r.try_get("subject").map_err(db_err)?,
                    body_sealed: r.try_get("body_sealed").map_err(db_err)?,
                    status: OutboxStatus::parse(&status).ok_or_else(|| corrupt("outbox status"))?,
                    attempts: n32(r.try_get("attempts").map_err(db_err)?),
                    next_attempt_at: from_us(r.try_get("next_attempt_at").map_err(db_err)?)?,
                    last_error: r.try_get("last_error").map_err(db_err)?,
                    created_at: from_us(r.try_get("created_at").map_err(db_err)?)?,
                    sent_at: opt_us(r.try_get("sent_at").map_err(db_err)?)?,
                })
            }

            pub(super) fn event(r: &$row) -> Result<AuditEvent, StoreError> {
                let detail: String = r.try_get("detail").map_err(db_err)?;
                Ok(AuditEvent {
                    id: EventId(r.try_get::<Uuid, _>("id").map_err(db_err)?),
                    at: from_us(r.try_get("at").map_err(db_err)?)?,
                    user_id: r.try_get::<Option<Uuid>, _>("user_id").map_err(db_err)?.map(UserId),
                    kind: r.try_get("kind").map_err(db_err)?,
                    outcome: r.try_get("outcome").map_err(db_err)?,
                    ip: r.try_get("ip").map_err(db_err)?,
                    user_agent: r.try_get("user_agent").map_err(db_err)?,
                    detail: serde_json::from_str(&detail).map_err(|_| corrupt("audit detail"))?,
                })
            }
        }
    };
}
