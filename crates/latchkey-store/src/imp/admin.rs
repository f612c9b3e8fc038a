//! The operator's reads (issue 14): accounts searched and paged, the audit log queried, the
//! outbox listed and a dead message requeued, and the summary figures. Every filter is a bound
//! parameter of one static statement (`$n IS NULL OR …`); pages are keyset cursors, so rows
//! written while an operator pages never shift a page.

/// A prefix as three ranges [prefix, prefix + U+10FFFF), compared byte by byte (`$bytes`), so
/// each has an index to use (migration 0020): the canonical username, the email in lower case,
/// the phone number.
macro_rules! prefix_ranges {
    ($bytes:literal) => {
        concat!(
            "((u.username_canonical",
            $bytes,
            " >= $1 AND u.username_canonical",
            $bytes,
            " < $10) ",
            "OR (LOWER(u.email)",
            $bytes,
            " >= $1 AND LOWER(u.email)",
            $bytes,
            " < $10) ",
            "OR (u.phone",
            $bytes,
            " >= $1 AND u.phone",
            $bytes,
            " < $10))"
        )
    };
}

/// The account search, its prefix condition given; the other filters are `$n IS NULL OR …`.
macro_rules! user_search {
    ($agg:literal, $prefix:expr) => {
        sql!(
            "SELECT u.*, ",
            "(SELECT MAX(s.last_refresh_at) FROM sessions s WHERE s.user_id = u.id) AS last_seen_at, ",
            "(SELECT ", $agg, "(f.kind, ',') FROM factors f WHERE f.user_id = u.id AND f.state = 'active') AS factor_kinds, ",
            "(SELECT COUNT(*) FROM devices d WHERE d.user_id = u.id AND d.revoked_at IS NULL) AS device_count ",
            "FROM users u WHERE ", $prefix, " ",
            "AND ($2 IS NULL OR u.status = $2) ",
            "AND ($3 IS NULL ",
            "  OR ($3 = 'device' AND EXISTS (SELECT 1 FROM devices d WHERE d.user_id = u.id AND d.revoked_at IS NULL)) ",
            "  OR ($3 = 'none' AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.user_id = u.id AND d.revoked_at IS NULL) ",
            "      AND NOT EXISTS (SELECT 1 FROM factors f WHERE f.user_id = u.id AND f.state = 'active')) ",
            "  OR EXISTS (SELECT 1 FROM factors f WHERE f.user_id = u.id AND f.kind = $3 AND f.state = 'active')) ",
            "AND ($4 IS NULL OR u.created_at >= $4) AND ($5 IS NULL OR u.created_at < $5) ",
            "AND ($6 IS NULL OR (SELECT MAX(s.last_refresh_at) FROM sessions s WHERE s.user_id = u.id) >= $6) ",
            "AND ($7 IS NULL OR COALESCE((SELECT MAX(s.last_refresh_at) FROM sessions s WHERE s.user_id = u.id), 0) < $7) ",
            "AND ($8 IS NULL OR u.id < $8) ",
            "ORDER BY u.id DESC LIMIT $9"
        )
    };
}

macro_rules! store_admin {
    ($name:ident, $row:ty, $agg:literal, $bytes:literal) => {
        impl $name {
            async fn admin_search_users(&self, q: &UserQuery) -> Result<Vec<UserSummary>, StoreError> {
                // Two statements, so that each is planned for what it does: with a prefix, the
                // three ranges' indexes; without one, the id index in page order.
                let statement = if q.prefix.is_some() {
                    user_search!($agg, prefix_ranges!($bytes))
                } else {
                    user_search!($agg, "($1 IS NULL AND $10 IS NULL)")
                };
                let rows = sqlx::query(statement)
                .bind(&q.prefix).bind(&q.status).bind(&q.factor)
                .bind(q.created_after.map(us)).bind(q.created_before.map(us))
                .bind(q.seen_after.map(us)).bind(q.seen_before.map(us))
                .bind(q.below.map(|u| u.0)).bind(i64::from(q.limit))
                .bind(q.prefix.as_ref().map(|p| format!("{p}\u{10FFFF}")))
                .fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter()
                    .map(|r| {
                        let kinds: Option<String> = r.try_get("factor_kinds").map_err(db_err)?;
                        let mut factors: Vec<String> =
                            kinds.iter().flat_map(|k| k.split(',')).map(str::to_owned).collect();
                        factors.sort();
                        let devices: i64 = r.try_get("device_count").map_err(db_err)?;
                        Ok(UserSummary {
                            user: Self::user(r)?,
                            last_seen_at: opt_us(r.try_get("last_seen_at").map_err(db_err)?)?,
                            factors,
                            devices: u64::try_from(devices).unwrap_or(0),
                        })
                    })
                    .collect()
            }

            async fn admin_query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>, StoreError> {
                let rows = sqlx::query(concat!(
                    "SELECT * FROM audit_events WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR kind = $2) ",
                    "AND ($3 IS NULL OR outcome = $3) AND ($4 IS NULL OR at >= $4) AND ($5 IS NULL OR at < $5) ",
                    "AND ($6 IS NULL OR (at, id) < (SELECT at, id FROM audit_events WHERE id = $6)) ",
                    "ORDER BY at DESC, id DESC LIMIT $7"
                ))
                .bind(q.user_id.map(|u| u.0)).bind(&q.kind).bind(&q.outcome)
                .bind(q.since.map(us)).bind(q.until.map(us)).bind(q.before.map(|e| e.0)).bind(i64::from(q.limit))
                .fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(Self::event).collect()
            }

            async fn admin_outbox_page(&self, status: Option<OutboxStatus>, before: Option<MessageId>, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
                let rows = sqlx::query(sql!(
                    "SELECT ", outbox_cols!(), " FROM outbox WHERE ($1 IS NULL OR status = $1) ",
                    "AND ($2 IS NULL OR (created_at, id) < (SELECT created_at, id FROM outbox WHERE id = $2)) ",
                    "ORDER BY created_at DESC, id DESC LIMIT $3"
                ))
                .bind(status.map(|s| s.as_str())).bind(before.map(|m| m.0)).bind(i64::from(limit))
                .fetch_all(&self.pool).await.map_err(db_err)?;
                rows.iter().map(Self::message).collect()
            }

            async fn admin_requeue_outbox(&self, id: MessageId, now: OffsetDateTime) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $2, last_error = NULL, lease_until = NULL WHERE id = $1 AND status = 'dead' AND recipient <> '' AND body_sealed IS NOT NULL")
                    .bind(id.0).bind(us(now)).execute(&self.writer).await.map_err(db_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn admin_figures(&self, since: OffsetDateTime) -> Result<Figures, StoreError> {
                let n = |r: &$row, c: &str| r.try_get::<i64, _>(c).map(|v| u64::try_from(v).unwrap_or(0)).map_err(db_err);
                let mut f = Figures::default();
                for r in sqlx::query("SELECT status, COUNT(*) AS n FROM users GROUP BY status ORDER BY status")
                    .fetch_all(&self.pool).await.map_err(db_err)?
                {
                    f.users_by_status.push((r.try_get("status").map_err(db_err)?, n(&r, "n")?));
                }
                for r in sqlx::query(concat!(
                    "SELECT kind, COUNT(DISTINCT user_id) AS n FROM factors WHERE state = 'active' GROUP BY kind ",
                    "UNION ALL SELECT 'device' AS kind, COUNT(DISTINCT user_id) AS n FROM devices WHERE revoked_at IS NULL ORDER BY kind"
                ))
                .fetch_all(&self.pool).await.map_err(db_err)?
                {
                    f.users_by_factor.push((r.try_get("kind").map_err(db_err)?, n(&r, "n")?));
                }
                let r = sqlx::query(concat!(
                    "SELECT COUNT(*) AS n FROM users u WHERE NOT EXISTS (SELECT 1 FROM factors f WHERE f.user_id = u.id AND f.state = 'active') ",
                    "AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.user_id = u.id AND d.revoked_at IS NULL)"
                ))
                .fetch_one(&self.pool).await.map_err(db_err)?;
                f.users_without_factor = n(&r, "n")?;
                for r in sqlx::query("SELECT at / 86400000000 AS day, kind, outcome, COUNT(*) AS n FROM audit_events WHERE at >= $1 GROUP BY at / 86400000000, kind, outcome ORDER BY day, kind, outcome")
                    .bind(us(since)).fetch_all(&self.pool).await.map_err(db_err)?
                {
                    let day: i64 = r.try_get("day").map_err(db_err)?;
                    f.steps.push((day, r.try_get("kind").map_err(db_err)?, r.try_get("outcome").map_err(db_err)?, n(&r, "n")?));
                }
                for r in sqlx::query("SELECT provider, status, COUNT(*) AS n, SUM(CASE WHEN attempts > 1 THEN 1 ELSE 0 END) AS retried FROM outbox WHERE created_at >= $1 GROUP BY provider, status ORDER BY provider, status")
                    .bind(us(since)).fetch_all(&self.pool).await.map_err(db_err)?
                {
                    f.delivery.push((r.try_get("provider").map_err(db_err)?, r.try_get("status").map_err(db_err)?, n(&r, "n")?, n(&r, "retried")?));
                }
                Ok(f)
            }
        }
    };
}
