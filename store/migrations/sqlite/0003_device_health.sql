-- The radio and power state a device last reported, and when (µs since the epoch).
ALTER TABLE devices ADD COLUMN rssi_dbm REAL;
ALTER TABLE devices ADD COLUMN snr_db REAL;
ALTER TABLE devices ADD COLUMN battery_percent REAL;
ALTER TABLE devices ADD COLUMN health_at INTEGER;
