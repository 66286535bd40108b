-- Parked agents (#21): the settings of the parked tier. `parked_min` agents stay parked at all
-- times, never more than `parked_max` (0 turns the tier off), and an idle agent above the warm
-- target is parked after `park_after_ms` of idle time. Added as columns so they sit on every
-- settings row (one per shape once #22's shapes are in).
--
-- Existing pools get the defaults new pools get (pool_sizing::DEFAULT_PARKED_MIN, _MAX,
-- DEFAULT_PARK_AFTER); the environment only seeds a row that does not exist yet.
ALTER TABLE pool_settings ADD COLUMN parked_min INTEGER NOT NULL DEFAULT 300 CHECK (parked_min >= 0);
ALTER TABLE pool_settings ADD COLUMN parked_max INTEGER NOT NULL DEFAULT 500 CHECK (parked_max >= 0);
ALTER TABLE pool_settings ADD COLUMN park_after_ms BIGINT NOT NULL DEFAULT 600000 CHECK (park_after_ms >= 0);
ALTER TABLE pool_settings ADD CONSTRAINT pool_settings_parked_min_within_max CHECK (parked_min <= parked_max);
