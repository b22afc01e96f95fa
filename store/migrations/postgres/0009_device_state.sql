-- What a device said about itself besides its readings: Sparkplug B online/offline (birth and
-- death certificates) and a CJ/T 188 water meter's status word (valve, battery), each with the
-- time it was received. An older message never overwrites a newer state.
ALTER TABLE devices ADD COLUMN online boolean;
ALTER TABLE devices ADD COLUMN online_at timestamptz;
ALTER TABLE devices ADD COLUMN valve text CHECK (valve IN ('open', 'closed', 'abnormal'));
ALTER TABLE devices ADD COLUMN battery_low boolean;
ALTER TABLE devices ADD COLUMN meter_status_at timestamptz;
