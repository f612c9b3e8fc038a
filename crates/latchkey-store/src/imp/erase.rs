//! Deleting an account (`Write::EraseUser`): every row that is the user's, in an order the
//! foreign keys accept, and the personal data other rows keep about them.

macro_rules! store_erase {
    ($name:ident, $db:ty) => {
        impl $name {
            async fn erase(tx: &mut sqlx::Transaction<'static, $db>, e: Erasure) -> Result<(), StoreError> {
                let user = e.user_id.0;
                // The notices queued in this batch are delivered, then erased.
                for id in &e.notices {
                    sqlx::query("UPDATE outbox SET erase_on_delivery = TRUE WHERE id = $1")
                        .bind(id.0).execute(&mut **tx).await.map_err(db_err)?;
                }
                for to in &e.addresses {
                    sqlx::query("DELETE FROM outbox WHERE recipient = $1 AND status IN ('pending', 'sending') AND NOT erase_on_delivery")
                        .bind(to).execute(&mut **tx).await.map_err(db_err)?;
                    sqlx::query("UPDATE outbox SET recipient = '', body_sealed = NULL WHERE recipient = $1 AND status IN ('sent', 'dead')")
                        .bind(to).execute(&mut **tx).await.map_err(db_err)?;
                }
                for key in &e.counter_keys {
                    sqlx::query("DELETE FROM failure_counters WHERE key = $1").bind(key).execute(&mut **tx).await.map_err(db_err)?;
                }
                for key in &e.rate_keys {
                    sqlx::query("DELETE FROM rate_counters WHERE key = $1").bind(key).execute(&mut **tx).await.map_err(db_err)?;
                }
                for q in [
                    "DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM sessions WHERE user_id = $1)",
                    "DELETE FROM sessions WHERE user_id = $1",
                    "DELETE FROM recovery_codes WHERE user_id = $1",
                    "DELETE FROM factors WHERE user_id = $1",
                    "DELETE FROM approvals WHERE user_id = $1",
                    "DELETE FROM remembered_clients WHERE user_id = $1",
                    "DELETE FROM passkeys WHERE user_id = $1",
                    "DELETE FROM sightings WHERE user_id = $1",
                    "DELETE FROM devices WHERE user_id = $1",
                    "DELETE FROM flows WHERE user_id = $1",
                    "DELETE FROM admins WHERE user_id = $1",
                    "UPDATE audit_events SET ip = NULL, user_agent = NULL, detail = '{}' WHERE user_id = $1",
                    "DELETE FROM users WHERE id = $1",
                ] {
                    sqlx::query(q).bind(user).execute(&mut **tx).await.map_err(db_err)?;
                }
                sqlx::query("INSERT INTO retired_usernames (digest, until) VALUES ($1, $2) ON CONFLICT (digest) DO UPDATE SET until = excluded.until")
                    .bind(&e.username_digest).bind(us(e.retire_until)).execute(&mut **tx).await.map_err(db_err)?;
                Ok(())
            }
        }
    };
}
