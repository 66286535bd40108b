-- Secrets at rest (issue 15). The values themselves are sealed by the pool manager (ChaCha20-
-- Poly1305 under POOL_SECRETS_KEY, see crates/store/src/secrets.rs): the database never sees a
-- key, so no SQL here can encrypt. Plaintext left by earlier versions is sealed in place by the
-- first start that has a key (`Store::upkeep_secrets`). What SQL can do is keep less:

-- 1. A claim's stored answer carries the agent's gateway token: it is kept sealed, as text,
--    in `sealed_response`. `response` (JSONB) only holds answers stored by earlier versions,
--    until the upkeep seals them.
ALTER TABLE claim_idempotency_keys ADD COLUMN sealed_response TEXT;

-- 2. The setup password, the wallet key and the OpenRouter key are read once, by the creation
--    saga's variables step, which sets them as the agent's variables. The journal entry of that
--    step removes them from the row, in the same transaction, whatever code wrote it.
CREATE FUNCTION agent_setup_secrets_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE agent_metadata
       SET setup_password = NULL, wallet_private_key = NULL, openrouter_api_key = NULL
     WHERE id = NEW.agent_id
       AND num_nonnulls(setup_password, wallet_private_key, openrouter_api_key) > 0;
    RETURN NULL;
END
$$;
CREATE TRIGGER agent_setup_secrets_forget
    AFTER INSERT OR UPDATE ON agent_saga_steps
    FOR EACH ROW WHEN (NEW.step = 'variables')
    EXECUTE FUNCTION agent_setup_secrets_forget();

-- 3. An archived agent (`deleted`; the row is kept as the archive) keeps no secret at all.
CREATE FUNCTION agent_archive_forgets_secrets() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.gateway_token := NULL;
    NEW.agent_api_token := NULL;
    NEW.setup_password := NULL;
    NEW.wallet_private_key := NULL;
    NEW.openrouter_api_key := NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER agent_archive_forgets_secrets
    BEFORE INSERT OR UPDATE ON agent_metadata
    FOR EACH ROW WHEN (NEW.status = 'deleted')
    EXECUTE FUNCTION agent_archive_forgets_secrets();

-- What earlier versions kept: the secrets of archived agents, and setup secrets past their step.
UPDATE agent_metadata
   SET gateway_token = NULL, agent_api_token = NULL, setup_password = NULL,
       wallet_private_key = NULL, openrouter_api_key = NULL
 WHERE status = 'deleted'
   AND num_nonnulls(gateway_token, agent_api_token, setup_password, wallet_private_key, openrouter_api_key) > 0;
UPDATE agent_metadata a
   SET setup_password = NULL, wallet_private_key = NULL, openrouter_api_key = NULL
 WHERE num_nonnulls(setup_password, wallet_private_key, openrouter_api_key) > 0
   AND EXISTS (SELECT 1 FROM agent_saga_steps s WHERE s.agent_id = a.id AND s.step = 'variables');
