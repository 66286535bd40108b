-- Replicas that share the fleet (#23, shards): every replica has a row here, renewed on its
-- lock connection each heartbeat, and is live while its lease has not run out. Agents are
-- split into `shard_count` shards by a hash of their id; a replica owns a shard while it holds
-- that shard's advisory lock (two-key form: the class 'shrd', the shard's number) on its lock
-- connection, and lists what it holds in `shards` as it renews its lease.
--
-- Railway's hourly budget is shared the same way: each replica leases a slice of it
-- (`railway_hourly_slice`) in a transaction that sees every other replica's slice, so that
-- together they never exceed it. A replica's row outlives its lease by an hour (what it sent
-- is still in Railway's window), and its slice counts until then.
CREATE TABLE pool_replicas (
    replica                TEXT PRIMARY KEY,
    shard_count            INTEGER NOT NULL CHECK (shard_count > 0),
    joined_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until            TIMESTAMPTZ NOT NULL,
    shards                 INTEGER[] NOT NULL DEFAULT '{}',
    railway_hourly_slice   INTEGER NOT NULL DEFAULT 0 CHECK (railway_hourly_slice >= 0),
    railway_used_last_hour INTEGER NOT NULL DEFAULT 0 CHECK (railway_used_last_hour >= 0)
);
