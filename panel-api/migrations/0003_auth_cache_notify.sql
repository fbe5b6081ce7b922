-- Every panel-api process keeps the API keys it has authenticated in memory
-- (src/authcache.rs), each joined with its user. These triggers tell all of them,
-- through NOTIFY on the channel `ferrodactyl_auth`, when such a row changes, in the
-- writing transaction itself, so the notice is sent when (and only if) it commits,
-- whoever wrote it: a panel-api replica, the CLI, or an operator in psql.
--
-- Payloads: `k:<identifier>` (one key), `u:<user id>` (every key of a user), `*`
-- (everything: TRUNCATE). `last_used_at`/`updated_at`-only updates (written on
-- every request, at most once a second per key) change nothing that is cached and
-- send nothing.
CREATE FUNCTION ferrodactyl_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('ferrodactyl_auth', '*');
    ELSIF TG_TABLE_NAME = 'api_keys' THEN
        PERFORM pg_notify('ferrodactyl_auth', 'k:' || OLD.identifier);
        IF TG_OP = 'UPDATE' AND NEW.identifier IS DISTINCT FROM OLD.identifier THEN
            PERFORM pg_notify('ferrodactyl_auth', 'k:' || NEW.identifier);
        END IF;
    ELSE
        PERFORM pg_notify('ferrodactyl_auth', 'u:' || OLD.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_auth_cache_update AFTER UPDATE ON api_keys FOR EACH ROW
    WHEN (to_jsonb(OLD) - 'last_used_at' - 'updated_at'
          IS DISTINCT FROM to_jsonb(NEW) - 'last_used_at' - 'updated_at')
    EXECUTE FUNCTION ferrodactyl_auth_changed();
CREATE TRIGGER api_keys_auth_cache_delete AFTER DELETE ON api_keys FOR EACH ROW
    EXECUTE FUNCTION ferrodactyl_auth_changed();
CREATE TRIGGER api_keys_auth_cache_truncate AFTER TRUNCATE ON api_keys FOR EACH STATEMENT
    EXECUTE FUNCTION ferrodactyl_auth_changed();

CREATE TRIGGER users_auth_cache_update AFTER UPDATE ON users FOR EACH ROW
    WHEN (to_jsonb(OLD) - 'updated_at' IS DISTINCT FROM to_jsonb(NEW) - 'updated_at')
    EXECUTE FUNCTION ferrodactyl_auth_changed();
CREATE TRIGGER users_auth_cache_delete AFTER DELETE ON users FOR EACH ROW
    EXECUTE FUNCTION ferrodactyl_auth_changed();
CREATE TRIGGER users_auth_cache_truncate AFTER TRUNCATE ON users FOR EACH STATEMENT
    EXECUTE FUNCTION ferrodactyl_auth_changed();
