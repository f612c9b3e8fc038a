//! SQLite's hot writes, run on the writer connection directly (`group::commit_direct`): the
//! statements of a reservation or of a flow step's batch, executed one after another on one
//! thread, where through sqlx each is a command handed to the connection's worker thread and
//! waited for. The statements are the ones sqlx runs (`sql.rs`); the conformance suite runs both.

use super::sql::*;
use super::{corrupt, db_err, from_us, kind_of, mfa_method, n32, opt_us, us};
use base64::Engine;
use latchkey_core::ids::{
    ApprovalId, DeviceId, EventId, FactorId, FlowId, MessageId, PasskeyId, RememberedClientId, SessionId, UserId,
};
use latchkey_core::model::*;
use latchkey_core::store::{ReservedStep, RotateOutcome, StoreError, Write};
use rusqlite::{Connection, ToSql};
use time::OffsetDateTime;
use uuid::Uuid;

/// The writer task's own connection for direct groups (`group::commit_direct`), with the
/// settings of sqlx's (`Database::open`): every commit durable, foreign keys checked, deleted
/// rows zeroed, and savepoints' journals kept in memory.
pub(super) fn open_writer(path: &std::path::Path) -> Result<Connection, StoreError> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let db = Connection::open_with_flags(path, flags).map_err(db_err)?;
    db.busy_timeout(std::time::Duration::from_secs(10)).map_err(db_err)?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA secure_delete = ON; PRAGMA temp_store = MEMORY;",
    )
    .map_err(db_err)?;
    // The group's statements, prepared once and kept between groups.
    db.set_prepared_statement_cache_capacity(64);
    Ok(db)
}

/// A pragma's value on `db`, as text.
pub(super) fn pragma(db: &Connection, name: &str) -> Result<String, StoreError> {
    db.query_row(&format!("PRAGMA {name}"), [], |r| {
        r.get_ref(0).map(|v| match v {
            rusqlite::types::ValueRef::Integer(i) => i.to_string(),
            rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            _ => String::new(),
        })
    })
    .map_err(db_err)
}

/// The row decoders of `rows.rs`, for rows read here.
pub(super) struct Direct;

/// sqlx's `Row::try_get`, for a row read here: the decoders of `rows.rs` read both.
trait TryGet {
    fn try_get<T: rusqlite::types::FromSql, I: rusqlite::RowIndex>(&self, idx: I) -> rusqlite::Result<T>;
}

impl TryGet for rusqlite::Row<'_> {
    fn try_get<T: rusqlite::types::FromSql, I: rusqlite::RowIndex>(&self, idx: I) -> rusqlite::Result<T> {
        self.get(idx)
    }
}

store_rows!(Direct, rusqlite::Row<'_>, #[allow(dead_code, reason = "the reads that may scan stay on sqlx's pool (`readers.rs`)")]);

/// The tracing target of the statements run here, each a debug event with its text as
/// `db.statement`, as sqlx's `sqlx::query` events carry the statements sqlx runs.
pub const STATEMENT_LOG: &str = "latchkey_store::direct";

/// `sql`, prepared (or taken from the connection's cache) with `params[N - 1]` bound to each `$N`.
pub(super) fn prepared<'c>(
    db: &'c Connection,
    sql: &str,
    params: &[&dyn ToSql],
) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
    // What sqlx logs for the statements it runs, for the same readers (the plans test).
    tracing::debug!(target: STATEMENT_LOG, { db.statement = sql }, "statement");
    let mut st = db.prepare_cached(sql).map_err(db_err)?;
    for i in 1..=st.parameter_count() {
        let value: &dyn ToSql = st
            .parameter_name(i)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| params.get(n).copied())
            .ok_or_else(|| StoreError::Unavailable(format!("parameter {i} of `{sql}` has no value")))?;
        st.raw_bind_parameter(i, value).map_err(db_err)?;
    }
    Ok(st)
}

/// Run a statement that returns no rows: the rows it changed.
fn execute(db: &Connection, sql: &str, params: &[&dyn ToSql]) -> Result<usize, StoreError> {
    prepared(db, sql, params)?.raw_execute().map_err(db_err)
}

/// The first row of a statement, read by `read`.
pub(super) fn first<T>(
    db: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    read: impl FnOnce(&rusqlite::Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut st = prepared(db, sql, params)?;
    let mut rows = st.raw_query();
    match rows.next().map_err(db_err)? {
        Some(r) => Ok(Some(read(r)?)),
        None => Ok(None),
    }
}

/// Column `i` of a row.
fn col<T: rusqlite::types::FromSql>(r: &rusqlite::Row<'_>, i: usize) -> Result<T, StoreError> {
    r.get(i).map_err(db_err)
}

/// One more attempt on a flow, if it has had fewer than `max` (`flow_attempt_in`).
pub(super) fn flow_attempt(db: &Connection, id: FlowId, max: u32) -> Result<Option<u32>, StoreError> {
    let v = first(db, FLOW_ATTEMPT, &[id.0.as_bytes(), &i64::from(max)], |r| col::<i64>(r, 0))?;
    Ok(v.map(n32))
}

/// One more attempt against a failure counter (`failure_in`, on one connection: no purge runs
/// between its statements).
pub(super) fn failure(
    db: &Connection,
    key: &str,
    kind: &str,
    now: OffsetDateTime,
    policy: &LockoutPolicy,
) -> Result<Reservation, StoreError> {
    execute(db, FAILURE_ROW, &[&key, &kind])?;
    let counted =
        first(db, FAILURE_COUNT, &[&key, &kind, &i64::from(policy.hard_cap), &us(now)], |r| col::<i64>(r, 0))?;
    if let Some(failures) = counted {
        let failures = n32(failures);
        let until = policy.delay_after(failures).map(|d| us(now + d));
        let forget = policy.forget_at(failures, now).map(us);
        execute(db, FAILURE_DELAY, &[&key, &kind, &until, &forget])?;
        return Ok(Reservation::Allowed(failures));
    }
    let row = first(db, FAILURE_READ, &[&key, &kind], |r| Ok((col::<i64>(r, 0)?, col::<Option<i64>>(r, 1)?)))?;
    let (failures, until) = row.ok_or_else(|| StoreError::Unavailable("failure counter vanished".into()))?;
    let failures = n32(failures);
    Ok(Reservation::Locked(if failures >= policy.hard_cap { None } else { opt_us(until)? }))
}

/// `Store::reserve_attempt` in one transaction.
pub(super) fn reserve_attempt(
    db: &Connection,
    id: FlowId,
    max: u32,
    account: Option<&latchkey_core::model::AccountCounter>,
) -> Result<AttemptReservation, StoreError> {
    let attempts = flow_attempt(db, id, max)?;
    let account = match (attempts, account) {
        (Some(_), Some(c)) => Some(failure(db, &c.key, &c.kind, c.now, &c.policy)?),
        _ => None,
    };
    Ok(AttemptReservation { attempts, account })
}

/// `Store::reserve_attempt_and_apply` in one transaction: the step's writes in a savepoint of
/// their own, undone alone when one fails, so the attempt stays counted.
pub(super) fn reserve_attempt_and_apply(
    db: &Connection,
    id: FlowId,
    max: u32,
    account: Option<&latchkey_core::model::AccountCounter>,
    then: &[Write],
) -> Result<ReservedStep, StoreError> {
    let reservation = reserve_attempt(db, id, max, account)?;
    if !reservation.granted() {
        return Ok(ReservedStep { reservation, applied: None });
    }
    control(db, "SAVEPOINT step")?;
    let applied = then.iter().try_for_each(|w| write(db, w));
    if applied.is_err() {
        control(db, "ROLLBACK TO step")?;
    }
    control(db, "RELEASE step")?;
    Ok(ReservedStep { reservation, applied: Some(applied) })
}

/// A transaction's or savepoint's statement, prepared once per connection.
pub(super) fn control(db: &Connection, sql: &str) -> Result<(), StoreError> {
    db.prepare_cached(sql).and_then(|mut st| st.raw_execute()).map(|_| ()).map_err(db_err)
}

/// A spent-once id (`Store::use_dpop_proof`): whether it was new.
pub(super) fn use_once(db: &Connection, id: &str, expires_at: OffsetDateTime) -> Result<bool, StoreError> {
    Ok(execute(db, USE_ONCE, &[&id, &us(expires_at)])? == 1)
}

/// `Store::rotate_refresh` in one transaction, as `PgStore::rotate_refresh_in` does through sqlx.
pub(super) fn rotate_refresh(
    db: &Connection,
    old_hash: &str,
    new_hash: &str,
    now: OffsetDateTime,
    idle_cutoff: OffsetDateTime,
    proof_jkt: Option<&str>,
) -> Result<RotateOutcome, StoreError> {
    let spent = first(db, SPEND_REFRESH, &[&old_hash, &us(now)], |r| col::<Uuid>(r, 0))?;
    let Some(sid) = spent else {
        let known = first(db, REFRESH_KNOWN, &[&old_hash], |r| Ok((col::<Uuid>(r, 0)?, col::<Option<String>>(r, 1)?)))?;
        let Some((sid, bound)) = known else { return Ok(RotateOutcome::Invalid) };
        if bound.is_some() && bound.as_deref() != proof_jkt {
            // Someone without the device key holds a spent token: they can do nothing with it,
            // and must not be able to end the session.
            return Ok(RotateOutcome::ProofMismatch);
        }
        // RFC 9700 §4.14.2: a spent token presented again revokes its family.
        execute(db, REVOKE_REUSED, &[sid.as_bytes(), &us(now)])?;
        return Ok(RotateOutcome::Reused(SessionId(sid)));
    };
    let mut session = first(db, SESSION_BY_ID, &[sid.as_bytes()], Direct::session)?
        .ok_or_else(|| StoreError::Unavailable("a refresh token's session is missing".into()))?;
    if session.dpop_jkt.is_some() && session.dpop_jkt.as_deref() != proof_jkt {
        // Not spent: the token is left to its device (RFC 9449 §5). Nobody saw it spent: the
        // write lock is this transaction's.
        execute(db, UNSPEND_REFRESH, &[&old_hash])?;
        return Ok(RotateOutcome::ProofMismatch);
    }
    if session.revoked_at.is_some() || session.expires_at <= now || session.last_refresh_at < idle_cutoff {
        return Ok(RotateOutcome::Invalid);
    }
    execute(db, INSERT_REFRESH_TOKEN, &[&new_hash, sid.as_bytes(), &us(now)])?;
    execute(db, TOUCH_SESSION, &[sid.as_bytes(), &us(now)])?;
    session.last_refresh_at = now;
    Ok(RotateOutcome::Rotated(Box::new(session)))
}

/// Whether `write` runs here; the others go through sqlx (`writes.rs`).
pub(super) fn runs(write: &Write) -> bool {
    matches!(
        write,
        Write::InsertFlow(_)
            | Write::UpdateFlow { .. }
            | Write::BindFlow { .. }
            | Write::InsertSession(_)
            | Write::Sightings(_)
            | Write::InsertRefreshToken { .. }
            | Write::ClearFailures { .. }
            | Write::DeviceUsed { .. }
            | Write::TouchFactor { .. }
            | Write::ConsumeTotpStep { .. }
            | Write::UseOnce { .. }
            | Write::Enqueue(_)
            | Write::Audit(_)
    )
}

/// Apply one write of a batch, as `writes.rs` does through sqlx.
pub(super) fn write(db: &Connection, w: &Write) -> Result<(), StoreError> {
    match w {
        Write::InsertFlow(f) => {
            let state = serde_json::to_string(&f.state).map_err(|_| corrupt("flow state"))?;
            execute(
                db,
                INSERT_FLOW,
                &[
                    f.id.0.as_bytes(),
                    &f.kind.as_str(),
                    &f.user_id.map(|u| *u.0.as_bytes()),
                    &state,
                    &i64::from(f.attempts),
                    &i64::from(f.sends),
                    &f.version,
                    &us(f.created_at),
                    &us(f.expires_at),
                    &f.context.ip,
                    &f.context.user_agent,
                ],
            )?;
        }
        Write::UpdateFlow { flow: f, expected_version } => {
            let state = serde_json::to_string(&f.state).map_err(|_| corrupt("flow state"))?;
            let done = execute(
                db,
                UPDATE_FLOW,
                &[f.id.0.as_bytes(), &state, &f.version, &us(f.expires_at), expected_version, &i64::from(f.attempts)],
            )?;
            if done != 1 {
                return Err(StoreError::Conflict("flow"));
            }
        }
        Write::BindFlow { id, context } => {
            execute(db, BIND_FLOW, &[id.0.as_bytes(), &context.ip, &context.user_agent])?;
        }
        Write::InsertSession(s) => {
            let amr = serde_json::to_string(&s.amr).map_err(|_| corrupt("amr"))?;
            execute(
                db,
                INSERT_SESSION,
                &[
                    s.id.0.as_bytes(),
                    s.user_id.0.as_bytes(),
                    &s.acr,
                    &amr,
                    &us(s.auth_time),
                    &us(s.created_at),
                    &us(s.last_refresh_at),
                    &us(s.expires_at),
                    &s.revoked_at.map(us),
                    &s.revoke_reason,
                    &s.context.ip,
                    &s.context.user_agent,
                    &s.device_id.map(|d| *d.0.as_bytes()),
                    &s.dpop_jkt,
                    &s.flow_id.map(|f| *f.0.as_bytes()),
                    &s.step_up_required_at.map(us),
                ],
            )?;
        }
        Write::Sightings(seen) => {
            // A session leaves two (its network and its user agent): one statement.
            for pair in seen.chunks(2) {
                let cols: Vec<[Box<dyn ToSql>; 8]> = pair
                    .iter()
                    .map(|v| {
                        let (lat, lon) = v.position_e6.unzip();
                        [
                            Box::new(*v.user_id.0.as_bytes()) as Box<dyn ToSql>,
                            Box::new(v.kind.clone()),
                            Box::new(v.value.clone()),
                            Box::new(v.country.clone()),
                            Box::new(lat),
                            Box::new(lon),
                            Box::new(us(v.first_seen_at)),
                            Box::new(us(v.last_seen_at)),
                        ]
                    })
                    .collect();
                let params: Vec<&dyn ToSql> = cols.iter().flatten().map(|b| b.as_ref()).collect();
                execute(db, if pair.len() == 2 { SIGHTINGS_TWO } else { SIGHTINGS_ONE }, &params)?;
            }
        }
        Write::InsertRefreshToken { hash, session_id, created_at } => {
            execute(db, INSERT_REFRESH_TOKEN, &[hash, session_id.0.as_bytes(), &us(*created_at)])?;
        }
        Write::ClearFailures { key, kind } => {
            execute(db, CLEAR_FAILURES, &[key, kind])?;
        }
        Write::DeviceUsed { id, at, reset_pin } => {
            // A revoked device stays revoked, even against a sign-in racing the revocation.
            if execute(db, DEVICE_USED, &[id.0.as_bytes(), &us(*at), reset_pin])? != 1 {
                return Err(StoreError::Conflict("device"));
            }
        }
        Write::TouchFactor { id, at } => {
            execute(db, TOUCH_FACTOR, &[id.0.as_bytes(), &us(*at)])?;
        }
        Write::ConsumeTotpStep { id, step, at } => {
            // RFC 6238 §5.2: a step is accepted once, and only after the last one.
            if execute(db, CONSUME_TOTP_STEP, &[id.0.as_bytes(), step, &us(*at)])? != 1 {
                return Err(StoreError::Conflict("totp_step"));
            }
        }
        Write::UseOnce { id, expires_at } => {
            if !use_once(db, id, *expires_at)? {
                return Err(StoreError::Conflict("used_once"));
            }
        }
        Write::Enqueue(m) => {
            execute(
                db,
                ENQUEUE,
                &[
                    m.id.0.as_bytes(),
                    &m.channel,
                    &m.provider,
                    &m.to,
                    &m.subject,
                    &m.body_sealed,
                    &m.status.as_str(),
                    &i64::from(m.attempts),
                    &us(m.next_attempt_at),
                    &m.last_error,
                    &us(m.created_at),
                    &m.sent_at.map(us),
                ],
            )?;
        }
        Write::Audit(e) => {
            execute(
                db,
                AUDIT,
                &[
                    e.id.0.as_bytes(),
                    &us(e.at),
                    &e.user_id.map(|u| *u.0.as_bytes()),
                    &e.kind,
                    &e.outcome,
                    &e.ip,
                    &e.user_agent,
                    &e.detail.to_string(),
                ],
            )?;
        }
        _ => return Err(StoreError::Unavailable("this write is not one the writer connection runs directly".into())),
    }
    Ok(())
}
