-- The bot's own tables. Panel URLs and API keys are stored only as Fernet tokens
-- (`*_enc` columns); nothing here holds a credential in plain text.

CREATE TABLE guild_configs (
    guild_id        BIGINT PRIMARY KEY,
    admin_role_id   BIGINT,
    configured_by   BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE user_configs (
    discord_user_id     BIGINT PRIMARY KEY,
    panel_url_enc       TEXT,
    api_key_enc         TEXT,
    application_key_enc TEXT,
    can_manage_servers  BOOLEAN NOT NULL DEFAULT TRUE,
    can_create_users    BOOLEAN NOT NULL DEFAULT FALSE,
    max_servers         INTEGER,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Servers a Discord user has managed through the bot (autocomplete cache and the
-- `max_servers` allowance).
CREATE TABLE server_configs (
    id                BIGSERIAL PRIMARY KEY,
    discord_user_id   BIGINT NOT NULL REFERENCES user_configs (discord_user_id) ON DELETE CASCADE,
    server_identifier TEXT NOT NULL,
    server_name       TEXT NOT NULL,
    last_used_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (discord_user_id, server_identifier)
);

CREATE TABLE audit_logs (
    id              BIGSERIAL PRIMARY KEY,
    guild_id        BIGINT,
    discord_user_id BIGINT NOT NULL,
    command         TEXT NOT NULL,
    target          TEXT,
    result          TEXT NOT NULL,
    detail          TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_logs_created_at ON audit_logs (created_at DESC);
CREATE INDEX audit_logs_user ON audit_logs (discord_user_id, created_at DESC);
