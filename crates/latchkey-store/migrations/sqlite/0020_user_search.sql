-- Issue 14: the operator's search by a prefix of the username, the email (any case) or the phone
-- number, as ranges each of these indexes serves (the username's unique index is the third).
CREATE INDEX users_email_lower ON users (lower(email));
CREATE INDEX users_phone ON users (phone);
