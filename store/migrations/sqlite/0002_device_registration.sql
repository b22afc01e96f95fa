-- Who registered a device, and when (µs since the epoch). NULL: first contact only.
ALTER TABLE devices ADD COLUMN registered_by TEXT;
ALTER TABLE devices ADD COLUMN registered_at INTEGER;
