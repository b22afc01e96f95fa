-- Who registered a device, and when. NULL: it registered itself by reporting (first contact),
-- which the same-day rule lists as "reporting but unregistered".
ALTER TABLE devices ADD COLUMN registered_by text;
ALTER TABLE devices ADD COLUMN registered_at timestamptz;
