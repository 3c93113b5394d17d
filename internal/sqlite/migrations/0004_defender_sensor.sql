-- The Defender's runtime sensor as it last reported it: probes and loss
-- counters, as JSON (inventory.Sensor). Empty: never reported.
ALTER TABLE defenders ADD COLUMN sensor TEXT NOT NULL DEFAULT '';
