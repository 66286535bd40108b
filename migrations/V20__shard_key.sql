-- Shards filtered in SQL (#23, shards): every agent row carries its shard key, the 32-bit
-- hash of its id that `pool_store::shard_key` computes (FNV-1a over the id's bytes, then
-- splitmix64's finaliser, the high 32 bits). An agent's shard among N is `shard_key % N`, so
-- a replica's walk asks Postgres for its own shards' rows only, instead of reading every row
-- and dropping three quarters of them.
--
-- The key is set by a trigger when a row is inserted (or its id changes, which nothing does),
-- not as a generated column: Postgres 15 recomputes a stored generated column on every
-- UPDATE, and the tick updates every row once an interval. Computed with numeric arithmetic
-- (Postgres has no unsigned 64-bit integers): about 30 µs an id, once per agent.
-- crates/store/tests/shards.rs checks that Postgres and Rust agree.
CREATE FUNCTION pool_shard_key(id TEXT) RETURNS BIGINT
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    m  NUMERIC := 18446744073709551616; -- 2^64
    h  NUMERIC := 14695981039346656037; -- FNV-1a's offset basis
    lb NUMERIC;
    s  BIGINT;
    b  INTEGER;
    bytes BYTEA := convert_to(id, 'UTF8');
BEGIN
    FOR i IN 0 .. length(bytes) - 1 LOOP
        b := get_byte(bytes, i);
        -- h ^= b (the low byte only), h *= FNV's prime, modulo 2^64.
        lb := h % 256;
        h := ((h - lb + (lb::INTEGER # b)) * 1099511628211) % m;
    END LOOP;
    -- splitmix64's finaliser: z ^= z >> 30 (logical); z *= ...; and so on. The xors and
    -- shifts run on the two's-complement bigint, the products on numeric.
    s := (CASE WHEN h >= 9223372036854775808 THEN h - m ELSE h END)::BIGINT;
    s := s # ((s >> 30) & 17179869183);
    h := ((s::NUMERIC + CASE WHEN s < 0 THEN m ELSE 0 END) * 13787848793156543929) % m;
    s := (CASE WHEN h >= 9223372036854775808 THEN h - m ELSE h END)::BIGINT;
    s := s # ((s >> 27) & 137438953471);
    h := ((s::NUMERIC + CASE WHEN s < 0 THEN m ELSE 0 END) * 10723151780598845931) % m;
    s := (CASE WHEN h >= 9223372036854775808 THEN h - m ELSE h END)::BIGINT;
    s := s # ((s >> 31) & 8589934591);
    RETURN (s >> 32) & 4294967295;
END
$$;

CREATE FUNCTION agent_metadata_shard_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.shard_key := pool_shard_key(NEW.id);
    RETURN NEW;
END
$$;

ALTER TABLE agent_metadata ADD COLUMN shard_key BIGINT;
UPDATE agent_metadata SET shard_key = pool_shard_key(id);
ALTER TABLE agent_metadata ALTER COLUMN shard_key SET NOT NULL;
CREATE TRIGGER agent_metadata_shard_key
    BEFORE INSERT OR UPDATE OF id ON agent_metadata
    FOR EACH ROW EXECUTE FUNCTION agent_metadata_shard_key();

-- When each replica last renewed its lease: the status shows how old each lease is.
ALTER TABLE pool_replicas ADD COLUMN renewed_at TIMESTAMPTZ NOT NULL DEFAULT now();
