//! Applying one `Write` inside a batch's transaction: the SQL for each, with the
//! compare-and-swap and uniqueness checks that turn a lost race into `StoreError::Conflict`.

macro_rules! store_writes {
    ($name:ident, $db:ty) => {
        impl $name {
            async fn write(tx: &mut sqlx::Transaction<'static, $db>, w: Write) -> Result<(), StoreError> {
                match w {
                    Write::InsertUser(u) => {
                        let r = sqlx::query(sql!("INSERT INTO users (", user_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"))
                            .bind(u.id.0).bind(&u.username).bind(&u.username_canonical).bind(&u.email).bind(u.email_verified)
                            .bind(&u.phone).bind(u.phone_verified).bind(u.status.as_str()).bind(&u.password_hash)
                            .bind(u.must_change_password).bind(us(u.created_at)).bind(us(u.updated_at))
                            .bind(u.preferred_mfa.map(|m| m.as_str())).bind(u.phone_changed_at.map(us)).bind(u.email_changed_at.map(us))
                            .bind(&u.profile.name).bind(&u.profile.locale).bind(&u.profile.zoneinfo).bind(&u.profile.picture)
                            .bind(custom_json(&u.profile.custom)?)
                            .execute(&mut **tx).await;
                        match r {
                            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(StoreError::Conflict("username")),
                            Err(e) => return Err(db_err(e)),
                            Ok(_) => {}
                        }
                    }
                    Write::ClaimUsername { digest, at } => {
                        let retired = sqlx::query("SELECT 1 FROM retired_usernames WHERE digest = $1 AND until > $2")
                            .bind(&digest).bind(us(at)).fetch_optional(&mut **tx).await.map_err(db_err)?;
                        if retired.is_some() {
                            return Err(StoreError::Conflict("username"));
                        }
                    }
                    Write::EraseUser(e) => Self::erase(tx, *e).await?,
                    Write::SetAdminRole { user_id, role: Some(role), at } => {
                        sqlx::query("INSERT INTO admins (user_id, role, granted_at) VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE SET role = excluded.role, granted_at = excluded.granted_at")
                            .bind(user_id.0).bind(&role).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::SetAdminRole { user_id, role: None, .. } => {
                        sqlx::query("DELETE FROM admins WHERE user_id = $1").bind(user_id.0).execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::UpdateUser(u) => {
                        sqlx::query("UPDATE users SET email = $2, email_verified = $3, phone = $4, phone_verified = $5, status = $6, password_hash = $7, must_change_password = $8, updated_at = $9, preferred_mfa = $10, phone_changed_at = $11, email_changed_at = $12, name = $13, locale = $14, zoneinfo = $15, picture = $16, attributes = $17 WHERE id = $1")
                            .bind(u.id.0).bind(&u.email).bind(u.email_verified).bind(&u.phone).bind(u.phone_verified)
                            .bind(u.status.as_str()).bind(&u.password_hash).bind(u.must_change_password).bind(us(u.updated_at))
                            .bind(u.preferred_mfa.map(|m| m.as_str())).bind(u.phone_changed_at.map(us)).bind(u.email_changed_at.map(us))
                            .bind(&u.profile.name).bind(&u.profile.locale).bind(&u.profile.zoneinfo).bind(&u.profile.picture)
                            .bind(custom_json(&u.profile.custom)?)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::InsertFlow(f) => {
                        let state = serde_json::to_string(&f.state).map_err(|_| corrupt("flow state"))?;
                        sqlx::query(sql::INSERT_FLOW)
                            .bind(f.id.0).bind(f.kind.as_str()).bind(f.user_id.map(|u| u.0)).bind(state)
                            .bind(i64::from(f.attempts)).bind(i64::from(f.sends)).bind(f.version)
                            .bind(us(f.created_at)).bind(us(f.expires_at)).bind(&f.context.ip).bind(&f.context.user_agent)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::UpdateFlow { flow: f, expected_version } => {
                        let state = serde_json::to_string(&f.state).map_err(|_| corrupt("flow state"))?;
                        // `attempts` as the transition says: the wrong answers before it (the right
                        // answer that made it reserved one more, which it gives back).
                        let done = sqlx::query(sql::UPDATE_FLOW)
                            .bind(f.id.0).bind(state).bind(f.version).bind(us(f.expires_at)).bind(expected_version).bind(i64::from(f.attempts))
                            .execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("flow"));
                        }
                    }
                    Write::BindFlow { id, context } => {
                        sqlx::query(sql::BIND_FLOW)
                            .bind(id.0).bind(&context.ip).bind(&context.user_agent)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::InsertSession(s) => {
                        let amr = serde_json::to_string(&s.amr).map_err(|_| corrupt("amr"))?;
                        sqlx::query(sql::INSERT_SESSION)
                            .bind(s.id.0).bind(s.user_id.0).bind(&s.acr).bind(amr).bind(us(s.auth_time)).bind(us(s.created_at))
                            .bind(us(s.last_refresh_at)).bind(us(s.expires_at)).bind(s.revoked_at.map(us)).bind(&s.revoke_reason)
                            .bind(&s.context.ip).bind(&s.context.user_agent).bind(s.device_id.map(|d| d.0)).bind(&s.dpop_jkt)
                            .bind(s.flow_id.map(|f| f.0)).bind(s.step_up_required_at.map(us))
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::RevokeFlowSession { flow_id, user_id, at, reason } => {
                        sqlx::query("UPDATE sessions SET revoked_at = $3, revoke_reason = $4 WHERE flow_id = $1 AND user_id = $2 AND revoked_at IS NULL")
                            .bind(flow_id.0).bind(user_id.0).bind(us(at)).bind(&reason)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::Sightings(seen) => {
                        // A session leaves two (its network and its user agent): one statement.
                        for pair in seen.chunks(2) {
                            let mut q = sqlx::query(if pair.len() == 2 { sql::SIGHTINGS_TWO } else { sql::SIGHTINGS_ONE });
                            for v in pair {
                                let (lat, lon) = v.position_e6.unzip();
                                q = q.bind(v.user_id.0).bind(&v.kind).bind(&v.value).bind(&v.country).bind(lat).bind(lon)
                                    .bind(us(v.first_seen_at)).bind(us(v.last_seen_at));
                            }
                            q.execute(&mut **tx).await.map_err(db_err)?;
                        }
                    }
                    Write::InsertRefreshToken { hash, session_id, created_at } => {
                        sqlx::query(sql::INSERT_REFRESH_TOKEN)
                            .bind(hash).bind(session_id.0).bind(us(created_at))
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::RaiseSession { id, acr, amr, auth_time, context } => {
                        let amr = serde_json::to_string(&amr).map_err(|_| corrupt("amr"))?;
                        let done = sqlx::query("UPDATE sessions SET acr = $2, amr = $3, auth_time = $4, ip = $5, user_agent = $6, step_up_required_at = NULL WHERE id = $1 AND revoked_at IS NULL AND expires_at > $4")
                            .bind(id.0).bind(&acr).bind(amr).bind(us(auth_time)).bind(&context.ip).bind(&context.user_agent)
                            .execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("session"));
                        }
                    }
                    Write::RequireStepUp { id, at } => {
                        sqlx::query("UPDATE sessions SET step_up_required_at = $2 WHERE id = $1 AND step_up_required_at IS NULL")
                            .bind(id.0).bind(us(at))
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::SpendRefreshTokens { session_id, at } => {
                        sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE session_id = $1 AND used_at IS NULL")
                            .bind(session_id.0).bind(us(at))
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::RevokeSession { id, at, reason } => {
                        sqlx::query("UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL")
                            .bind(id.0).bind(us(at)).bind(reason)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::RevokeUserSessions { user_id, at, reason } => {
                        sqlx::query("UPDATE sessions SET revoked_at = $2, revoke_reason = $3 WHERE user_id = $1 AND revoked_at IS NULL")
                            .bind(user_id.0).bind(us(at)).bind(&reason)
                            .execute(&mut **tx).await.map_err(db_err)?;
                        sqlx::query("UPDATE remembered_clients SET revoked_at = $2, revoke_reason = $3 WHERE user_id = $1 AND revoked_at IS NULL")
                            .bind(user_id.0).bind(us(at)).bind(&reason)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::InsertAppAttestKey(k) => {
                        let done = sqlx::query("INSERT INTO app_attest_keys (key_id, app_id, public_key, counter, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6)")
                            .bind(&k.key_id).bind(&k.app_id).bind(&k.public_key).bind(i64::from(k.counter)).bind(us(k.created_at)).bind(k.last_used_at.map(us))
                            .execute(&mut **tx).await;
                        match done {
                            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(StoreError::Conflict("app_attest_key")),
                            other => { other.map_err(db_err)?; }
                        }
                    }
                    Write::AppAttestKeyUsed { key_id, seen, counter, at } => {
                        let done = sqlx::query("UPDATE app_attest_keys SET counter = $3, last_used_at = $4 WHERE key_id = $1 AND counter = $2")
                            .bind(key_id).bind(i64::from(seen)).bind(i64::from(counter)).bind(us(at))
                            .execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("app_attest_key"));
                        }
                    }
                    Write::InsertPasskey(k) => {
                        let done = sqlx::query("INSERT INTO passkeys (id, user_id, credential_id, name, aaguid, credential, sign_count, backup_eligible, backed_up, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
                            .bind(k.id.0).bind(k.user_id.0).bind(&k.credential_id).bind(&k.name).bind(&k.aaguid).bind(&k.credential)
                            .bind(i64::from(k.sign_count)).bind(k.backup_eligible).bind(k.backed_up).bind(us(k.created_at)).bind(k.last_used_at.map(us))
                            .execute(&mut **tx).await;
                        match done {
                            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(StoreError::Conflict("passkey")),
                            other => { other.map_err(db_err)?; }
                        }
                    }
                    Write::PasskeyUsed { id, seen_count, credential, sign_count, backed_up, at } => {
                        let done = sqlx::query("UPDATE passkeys SET credential = $3, sign_count = $4, backed_up = $5, last_used_at = $6 WHERE id = $1 AND sign_count = $2")
                            .bind(id.0).bind(i64::from(seen_count)).bind(credential).bind(i64::from(sign_count)).bind(backed_up).bind(us(at))
                            .execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("passkey"));
                        }
                    }
                    Write::RenamePasskey { id, user_id, name } => {
                        let done = sqlx::query("UPDATE passkeys SET name = $3 WHERE id = $1 AND user_id = $2")
                            .bind(id.0).bind(user_id.0).bind(name)
                            .execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("passkey"));
                        }
                    }
                    Write::DeletePasskey { id, user_id } => {
                        let done = sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
                            .bind(id.0).bind(user_id.0)
                            .execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("passkey"));
                        }
                    }
                    Write::InsertRememberedClient(c) => {
                        sqlx::query("INSERT INTO remembered_clients (id, user_id, public_key, name, created_at, expires_at, last_used_at, revoked_at, revoke_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                            .bind(c.id.0).bind(c.user_id.0).bind(&c.public_key).bind(&c.name).bind(us(c.created_at)).bind(us(c.expires_at))
                            .bind(c.last_used_at.map(us)).bind(c.revoked_at.map(us)).bind(&c.revoke_reason)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::ForgetRememberedClient { id, user_id, at, reason } => {
                        sqlx::query("UPDATE remembered_clients SET revoked_at = $3, revoke_reason = $4 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL")
                            .bind(id.0).bind(user_id.0).bind(us(at)).bind(reason)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::ForgetUserRememberedClients { user_id, at, reason } => {
                        sqlx::query("UPDATE remembered_clients SET revoked_at = $2, revoke_reason = $3 WHERE user_id = $1 AND revoked_at IS NULL")
                            .bind(user_id.0).bind(us(at)).bind(reason)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::RememberedClientUsed { id, at } => {
                        let done = sqlx::query("UPDATE remembered_clients SET last_used_at = $2 WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2")
                            .bind(id.0).bind(us(at))
                            .execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("remembered_client"));
                        }
                    }
                    Write::ClearFailures { key, kind } => {
                        // Reset rather than delete: a parallel `reserve_failure` blocked on this
                        // row re-reads it and counts from zero, where a deleted row made it find
                        // nothing at all (a 503 under PostgreSQL's read committed).
                        sqlx::query(sql::CLEAR_FAILURES)
                            .bind(key).bind(kind)
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::InsertFactor(f) => {
                        // An active factor of this kind added by a parallel request is the same
                        // factor: keep it (one active per kind and user).
                        sqlx::query("INSERT INTO factors (id, user_id, kind, state, secret_sealed, last_step, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (user_id, kind) WHERE state = 'active' DO NOTHING")
                            .bind(f.id.0).bind(f.user_id.0).bind(&f.kind).bind(&f.state).bind(&f.secret_sealed)
                            .bind(f.last_step).bind(us(f.created_at)).bind(f.last_used_at.map(us))
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::ActivateFactor { id } => {
                        let r = sqlx::query("UPDATE factors SET state = 'active' WHERE id = $1 AND state <> 'active'")
                            .bind(id.0).execute(&mut **tx).await;
                        match r {
                            // Another factor of its kind became active first, or this one was
                            // replaced or already activated.
                            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(StoreError::Conflict("factor")),
                            Err(e) => return Err(db_err(e)),
                            Ok(done) if done.rows_affected() != 1 => return Err(StoreError::Conflict("factor")),
                            Ok(_) => {}
                        }
                    }
                    Write::DeleteFactor { id } => {
                        sqlx::query("DELETE FROM recovery_codes WHERE user_id IN (SELECT user_id FROM factors WHERE id = $1 AND kind = 'recovery_codes')")
                            .bind(id.0).execute(&mut **tx).await.map_err(db_err)?;
                        sqlx::query("DELETE FROM factors WHERE id = $1").bind(id.0).execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::ReplaceRecoveryCodes { user_id, macs, at } => {
                        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id.0).execute(&mut **tx).await.map_err(db_err)?;
                        for mac in macs {
                            sqlx::query("INSERT INTO recovery_codes (user_id, mac, created_at) VALUES ($1, $2, $3)")
                                .bind(user_id.0).bind(mac).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                        }
                    }
                    Write::UseRecoveryCode { user_id, mac, at } => {
                        // Checklist REC-3: the conditional update is the single-use guarantee.
                        let done = sqlx::query("UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND mac = $2 AND used_at IS NULL")
                            .bind(user_id.0).bind(mac).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("recovery_code"));
                        }
                    }
                    Write::SetPushAddress { id, push } => {
                        let done = sqlx::query("UPDATE devices SET push_provider = $2, push_token = $3 WHERE id = $1 AND revoked_at IS NULL")
                            .bind(id.0).bind(push.as_ref().map(|p| p.provider.clone())).bind(push.as_ref().map(|p| p.token.clone()))
                            .execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("device"));
                        }
                    }
                    Write::InsertApproval(a) => {
                        sqlx::query("UPDATE approvals SET status = 'expired' WHERE user_id = $1 AND status = 'pending' AND expires_at <= $2")
                            .bind(a.user_id.0).bind(us(a.created_at)).execute(&mut **tx).await.map_err(db_err)?;
                        let action = a.action.as_ref().map(serde_json::to_string).transpose().map_err(|_| corrupt("approval action"))?;
                        let r = sqlx::query("INSERT INTO approvals (id, user_id, flow_id, kind, number, nonce, status, created_at, expires_at, decided_at, device_id, ip, user_agent, action) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")
                            .bind(a.id.0).bind(a.user_id.0).bind(a.flow_id.0).bind(&a.kind).bind(&a.number).bind(&a.nonce)
                            .bind(a.status.as_str()).bind(us(a.created_at)).bind(us(a.expires_at)).bind(a.decided_at.map(us))
                            .bind(a.device_id.map(|d| d.0)).bind(&a.context.ip).bind(&a.context.user_agent).bind(action)
                            .execute(&mut **tx).await;
                        match r {
                            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(StoreError::Conflict("approval_pending")),
                            Err(e) => return Err(db_err(e)),
                            Ok(_) => {}
                        }
                    }
                    Write::WithdrawApproval { id, at } => {
                        sqlx::query("UPDATE approvals SET status = 'withdrawn', decided_at = $2 WHERE id = $1 AND status = 'pending'")
                            .bind(id.0).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::DecideApproval { id, status, device_id, at } => {
                        let done = sqlx::query("UPDATE approvals SET status = $2, device_id = $3, decided_at = $4 WHERE id = $1 AND status = 'pending' AND expires_at > $4")
                            .bind(id.0).bind(status.as_str()).bind(device_id.0).bind(us(at))
                            .execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("approval"));
                        }
                    }
                    Write::InsertDevice(d) => {
                        let b64 = |k: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k);
                        sqlx::query("INSERT INTO devices (id, user_id, name, platform, possession_key, biometric_key, pin_hash, pin_failures, created_at, last_used_at, revoked_at, biometric_evidence, push_provider, push_token) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")
                            .bind(d.id.0).bind(d.user_id.0).bind(&d.name).bind(&d.platform).bind(b64(&d.possession_key))
                            .bind(b64(&d.biometric_key)).bind(&d.pin_hash).bind(i64::from(d.pin_failures)).bind(us(d.created_at))
                            .bind(d.last_used_at.map(us)).bind(d.revoked_at.map(us)).bind(evidence_json(d.biometric_evidence.as_ref())?)
                            .bind(d.push.as_ref().map(|p| p.provider.clone())).bind(d.push.as_ref().map(|p| p.token.clone()))
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::RevokeDevice { id, at } => {
                        sqlx::query("UPDATE devices SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                            .bind(id.0).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                        sqlx::query("UPDATE sessions SET revoked_at = $2, revoke_reason = 'device_revoked' WHERE device_id = $1 AND revoked_at IS NULL")
                            .bind(id.0).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::UpdateDevice { id, biometric_key, pin_hash } => {
                        let mut done = 0;
                        if let Some((key, evidence)) = biometric_key {
                            done += sqlx::query("UPDATE devices SET biometric_key = $2, biometric_evidence = $3 WHERE id = $1 AND revoked_at IS NULL")
                                .bind(id.0).bind(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key))
                                .bind(evidence_json(evidence.as_ref())?)
                                .execute(&mut **tx).await.map_err(db_err)?.rows_affected();
                        }
                        if let Some(hash) = pin_hash {
                            done += sqlx::query("UPDATE devices SET pin_hash = $2, pin_failures = 0 WHERE id = $1 AND revoked_at IS NULL")
                                .bind(id.0).bind(hash).execute(&mut **tx).await.map_err(db_err)?.rows_affected();
                        }
                        if done == 0 {
                            return Err(StoreError::Conflict("device"));
                        }
                    }
                    Write::DeviceUsed { id, at, reset_pin } => {
                        // A revoked device stays revoked, even against a sign-in racing the revocation.
                        let done = sqlx::query(sql::DEVICE_USED)
                            .bind(id.0).bind(us(at)).bind(reset_pin).execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("device"));
                        }
                    }
                    Write::TouchFactor { id, at } => {
                        sqlx::query(sql::TOUCH_FACTOR).bind(id.0).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::ConsumeTotpStep { id, step, at } => {
                        // RFC 6238 §5.2: a step is accepted once, and only after the last one.
                        let done = sqlx::query(sql::CONSUME_TOTP_STEP)
                            .bind(id.0).bind(step).bind(us(at)).execute(&mut **tx).await.map_err(db_err)?;
                        if done.rows_affected() != 1 {
                            return Err(StoreError::Conflict("totp_step"));
                        }
                    }
                    Write::UseOnce { id, expires_at } => {
                        let r = sqlx::query(sql::USE_ONCE)
                            .bind(&id).bind(us(expires_at)).execute(&mut **tx).await.map_err(db_err)?;
                        if r.rows_affected() != 1 {
                            return Err(StoreError::Conflict("used_once"));
                        }
                    }
                    Write::Enqueue(m) => {
                        sqlx::query(sql::ENQUEUE)
                            .bind(m.id.0).bind(&m.channel).bind(&m.provider).bind(&m.to).bind(&m.subject).bind(&m.body_sealed)
                            .bind(m.status.as_str()).bind(i64::from(m.attempts)).bind(us(m.next_attempt_at)).bind(&m.last_error)
                            .bind(us(m.created_at)).bind(m.sent_at.map(us))
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::UpgradePasswordHash { user_id, from, to } => {
                        sqlx::query("UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2")
                            .bind(user_id.0).bind(&from).bind(&to).execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::InsertWebhook(e) => {
                        let events = serde_json::to_string(&e.events).map_err(|_| corrupt("webhook events"))?;
                        sqlx::query("INSERT INTO webhook_endpoints (id, url, events, secret_sealed, created_at) VALUES ($1, $2, $3, $4, $5)")
                            .bind(&e.id).bind(&e.url).bind(events).bind(&e.secret_sealed).bind(us(e.created_at))
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::DeleteWebhook { id } => {
                        sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(&id).execute(&mut **tx).await.map_err(db_err)?;
                        sqlx::query("DELETE FROM outbox WHERE provider = $1 AND status <> 'sent'")
                            .bind(format!("{}{id}", latchkey_core::events::PROVIDER_PREFIX))
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                    Write::Audit(e) => {
                        sqlx::query(sql::AUDIT)
                            .bind(e.id.0).bind(us(e.at)).bind(e.user_id.map(|u| u.0)).bind(&e.kind).bind(&e.outcome)
                            .bind(&e.ip).bind(&e.user_agent).bind(e.detail.to_string())
                            .execute(&mut **tx).await.map_err(db_err)?;
                    }
                }
                Ok(())
            }
        }
    };
}
