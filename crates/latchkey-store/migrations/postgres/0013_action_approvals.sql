-- Issue 13: an approval may be of an action (PSD2-style dynamic linking). The action the phone
-- shows, as JSON; its hash is in `kind` (`action:<hash>`), which the phone's signature covers.
ALTER TABLE approvals ADD COLUMN action TEXT;
