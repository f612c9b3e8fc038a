-- Where a device is notified: `fcm`, `apns` or `webhook` and its token there (NULL: the device
-- polls). Registered by the device with a signed request.
ALTER TABLE devices ADD COLUMN push_provider TEXT;
ALTER TABLE devices ADD COLUMN push_token TEXT;
