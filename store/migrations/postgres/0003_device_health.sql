-- The radio and power state a device last reported (LoRaWAN RSSI/SNR at the best gateway,
-- battery), and when.
ALTER TABLE devices ADD COLUMN rssi_dbm double precision;
ALTER TABLE devices ADD COLUMN snr_db double precision;
ALTER TABLE devices ADD COLUMN battery_percent double precision;
ALTER TABLE devices ADD COLUMN health_at timestamptz;
