-- Issue 14: the custom attributes an operator declares ([[policy.attributes]]), as one JSON
-- object per user (NULL: none set).
ALTER TABLE users ADD COLUMN attributes TEXT;
