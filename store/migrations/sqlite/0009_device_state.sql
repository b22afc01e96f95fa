-- What a device said about itself besides its readings: Sparkplug B online/offline (birth and
-- death certificates) and a CJ/T 188 water meter's status word (valve, battery), each with the
-- time it was received. An older message never overwrites a newer state.
ALTER TABLE devices ADD COLUMN online INTEGER;            -- 0/1
ALTER TABLE devices ADD COLUMN online_at INTEGER;         -- µs since the epoch, UTC
ALTER TABLE devices ADD COLUMN valve TEXT CHECK (valve IN ('open', 'closed', 'abnormal'));
ALTER TABLE devices ADD COLUMN battery_low INTEGER;       -- 0/1
ALTER TABLE devices ADD COLUMN meter_status_at INTEGER;
