-- The three fixed-width lookup keys become VARCHAR of the same width.
--
-- As CHAR(n) (bpchar) they were compared with a text parameter as `col::text = $1`,
-- which no index serves: every API request's key lookup (api_keys.identifier),
-- every Remote API call's node lookup (nodes.daemon_token_id) and every Client API
-- server lookup by identifier (servers.uuid_short) scanned the whole table. VARCHAR
-- shares text's operators and index opclass, so `col = $1` uses the unique index.
-- Every stored value has exactly the column's width, so no value changes.
ALTER TABLE api_keys ALTER COLUMN identifier TYPE VARCHAR(16);
ALTER TABLE nodes ALTER COLUMN daemon_token_id TYPE VARCHAR(16);
ALTER TABLE servers ALTER COLUMN uuid_short TYPE VARCHAR(8);
