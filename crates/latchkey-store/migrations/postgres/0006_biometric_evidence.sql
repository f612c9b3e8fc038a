-- Checklist DEV-4: the verified attestation of a device's biometric key (JSON: format,
-- security_level, modality), or NULL: then a biometric sign-in is possession only.
ALTER TABLE devices ADD COLUMN biometric_evidence TEXT;
