-- One active factor of each kind per user, enforced by the database: two parallel enrolments
-- of the same kind (two SMS verifications, two authenticator-app confirmations) used to both
-- activate. Earlier duplicates keep the oldest.
DELETE FROM factors
WHERE state = 'active'
  AND EXISTS (
    SELECT 1 FROM factors older
    WHERE older.user_id = factors.user_id AND older.kind = factors.kind AND older.state = 'active'
      AND (older.created_at < factors.created_at OR (older.created_at = factors.created_at AND older.id < factors.id))
  );
CREATE UNIQUE INDEX factors_one_active_per_kind ON factors (user_id, kind) WHERE state = 'active';
