-- Ferrodactyl panel schema: the data model read and written by the Application,
-- Client and Remote APIs. Column names follow upstream's where a transformer prints
-- them, so a reader of upstream's docs finds the same names here.

CREATE TABLE users (
    id                    BIGSERIAL PRIMARY KEY,
    external_id           VARCHAR(191) UNIQUE,
    uuid                  UUID NOT NULL UNIQUE,
    username              VARCHAR(191) NOT NULL,
    email                 VARCHAR(191) NOT NULL,
    name_first            VARCHAR(191) NOT NULL,
    name_last             VARCHAR(191) NOT NULL,
    password              TEXT NOT NULL,
    language              VARCHAR(5) NOT NULL DEFAULT 'en',
    root_admin            BOOLEAN NOT NULL DEFAULT FALSE,
    use_totp              BOOLEAN NOT NULL DEFAULT FALSE,
    totp_secret           TEXT,
    totp_authenticated_at TIMESTAMPTZ,
    gravatar              BOOLEAN NOT NULL DEFAULT TRUE,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Upstream's MySQL collation compares case-insensitively; so do these.
CREATE UNIQUE INDEX users_username_unique ON users (lower(username));
CREATE UNIQUE INDEX users_email_unique ON users (lower(email));

CREATE TABLE recovery_tokens (
    id         BIGSERIAL PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX recovery_tokens_user ON recovery_tokens (user_id);

-- Only a SHA-256 hash of a key's 32-character secret is stored.
CREATE TABLE api_keys (
    id                 BIGSERIAL PRIMARY KEY,
    user_id            BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_type           SMALLINT NOT NULL,
    identifier         CHAR(16) NOT NULL UNIQUE,
    token_hash         BYTEA NOT NULL,
    allowed_ips        JSONB NOT NULL DEFAULT '[]',
    memo               TEXT NOT NULL DEFAULT '',
    last_used_at       TIMESTAMPTZ,
    expires_at         TIMESTAMPTZ,
    r_servers          SMALLINT NOT NULL DEFAULT 0,
    r_nodes            SMALLINT NOT NULL DEFAULT 0,
    r_allocations      SMALLINT NOT NULL DEFAULT 0,
    r_users            SMALLINT NOT NULL DEFAULT 0,
    r_locations        SMALLINT NOT NULL DEFAULT 0,
    r_nests            SMALLINT NOT NULL DEFAULT 0,
    r_eggs             SMALLINT NOT NULL DEFAULT 0,
    r_database_hosts   SMALLINT NOT NULL DEFAULT 0,
    r_server_databases SMALLINT NOT NULL DEFAULT 0,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_user ON api_keys (user_id, key_type);

CREATE TABLE user_ssh_keys (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        VARCHAR(191) NOT NULL,
    fingerprint VARCHAR(191) NOT NULL,
    public_key  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at  TIMESTAMPTZ
);
CREATE INDEX user_ssh_keys_user ON user_ssh_keys (user_id, fingerprint);

CREATE TABLE locations (
    id         BIGSERIAL PRIMARY KEY,
    short      VARCHAR(60) NOT NULL UNIQUE,
    long       VARCHAR(191),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- daemon_token is recoverable (it signs JWTs): encrypted with the application key.
CREATE TABLE nodes (
    id                  BIGSERIAL PRIMARY KEY,
    uuid                UUID NOT NULL UNIQUE,
    public              BOOLEAN NOT NULL DEFAULT TRUE,
    name                VARCHAR(191) NOT NULL,
    description         TEXT,
    location_id         BIGINT NOT NULL REFERENCES locations(id) ON DELETE RESTRICT,
    fqdn                VARCHAR(191) NOT NULL,
    scheme              VARCHAR(191) NOT NULL DEFAULT 'https',
    behind_proxy        BOOLEAN NOT NULL DEFAULT FALSE,
    maintenance_mode    BOOLEAN NOT NULL DEFAULT FALSE,
    memory              BIGINT NOT NULL,
    memory_overallocate BIGINT NOT NULL DEFAULT 0,
    disk                BIGINT NOT NULL,
    disk_overallocate   BIGINT NOT NULL DEFAULT 0,
    upload_size         BIGINT NOT NULL DEFAULT 100,
    daemon_token_id     CHAR(16) NOT NULL UNIQUE,
    daemon_token        TEXT NOT NULL,
    daemon_listen       INTEGER NOT NULL DEFAULT 8080,
    daemon_sftp         INTEGER NOT NULL DEFAULT 2022,
    daemon_base         VARCHAR(191) NOT NULL DEFAULT '/var/lib/pterodactyl/volumes',
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX nodes_location ON nodes (location_id);

CREATE TABLE nests (
    id          BIGSERIAL PRIMARY KEY,
    uuid        UUID NOT NULL UNIQUE,
    author      VARCHAR(191) NOT NULL,
    name        VARCHAR(191) NOT NULL,
    description TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE eggs (
    id                   BIGSERIAL PRIMARY KEY,
    uuid                 UUID NOT NULL UNIQUE,
    nest_id              BIGINT NOT NULL REFERENCES nests(id) ON DELETE CASCADE,
    author               VARCHAR(191) NOT NULL,
    name                 VARCHAR(191) NOT NULL,
    description          TEXT,
    features             JSONB,
    docker_images        JSONB NOT NULL DEFAULT '{}',
    file_denylist        JSONB,
    update_url           TEXT,
    config_files         TEXT,
    config_startup       TEXT,
    config_logs          TEXT,
    config_stop          VARCHAR(191),
    config_from          BIGINT REFERENCES eggs(id) ON DELETE SET NULL,
    startup              TEXT,
    script_container     VARCHAR(191) NOT NULL DEFAULT 'alpine:3.4',
    copy_script_from     BIGINT REFERENCES eggs(id) ON DELETE SET NULL,
    script_entry         VARCHAR(191) NOT NULL DEFAULT 'ash',
    script_is_privileged BOOLEAN NOT NULL DEFAULT TRUE,
    script_install       TEXT,
    force_outgoing_ip    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX eggs_nest ON eggs (nest_id);

CREATE TABLE egg_variables (
    id            BIGSERIAL PRIMARY KEY,
    egg_id        BIGINT NOT NULL REFERENCES eggs(id) ON DELETE CASCADE,
    name          VARCHAR(191) NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    env_variable  VARCHAR(191) NOT NULL,
    default_value TEXT NOT NULL DEFAULT '',
    user_viewable BOOLEAN NOT NULL DEFAULT FALSE,
    user_editable BOOLEAN NOT NULL DEFAULT FALSE,
    rules         TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (egg_id, env_variable)
);

CREATE TABLE mounts (
    id            BIGSERIAL PRIMARY KEY,
    uuid          UUID NOT NULL UNIQUE,
    name          VARCHAR(191) NOT NULL UNIQUE,
    description   TEXT,
    source        TEXT NOT NULL,
    target        TEXT NOT NULL,
    read_only     BOOLEAN NOT NULL DEFAULT FALSE,
    user_mountable BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE mount_node (
    node_id  BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    mount_id BIGINT NOT NULL REFERENCES mounts(id) ON DELETE CASCADE,
    PRIMARY KEY (node_id, mount_id)
);

CREATE TABLE servers (
    id               BIGSERIAL PRIMARY KEY,
    external_id      VARCHAR(191) UNIQUE,
    uuid             UUID NOT NULL UNIQUE,
    uuid_short       CHAR(8) NOT NULL UNIQUE,
    node_id          BIGINT NOT NULL REFERENCES nodes(id) ON DELETE RESTRICT,
    name             VARCHAR(191) NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    status           VARCHAR(191),
    skip_scripts     BOOLEAN NOT NULL DEFAULT FALSE,
    owner_id         BIGINT NOT NULL REFERENCES users(id) ON DELETE RESTRICT,
    memory           BIGINT NOT NULL,
    swap             BIGINT NOT NULL,
    disk             BIGINT NOT NULL,
    io               BIGINT NOT NULL,
    cpu              BIGINT NOT NULL,
    threads          VARCHAR(191),
    oom_disabled     BOOLEAN NOT NULL DEFAULT TRUE,
    allocation_id    BIGINT NOT NULL,
    nest_id          BIGINT NOT NULL REFERENCES nests(id) ON DELETE RESTRICT,
    egg_id           BIGINT NOT NULL REFERENCES eggs(id) ON DELETE RESTRICT,
    startup          TEXT NOT NULL,
    image            VARCHAR(191) NOT NULL,
    allocation_limit BIGINT,
    database_limit   BIGINT DEFAULT 0,
    backup_limit     BIGINT NOT NULL DEFAULT 0,
    installed_at     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX servers_owner ON servers (owner_id);
CREATE INDEX servers_node ON servers (node_id);
CREATE INDEX servers_egg ON servers (egg_id);

CREATE TABLE allocations (
    id         BIGSERIAL PRIMARY KEY,
    node_id    BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    ip         VARCHAR(191) NOT NULL,
    ip_alias   VARCHAR(191),
    port       INTEGER NOT NULL,
    server_id  BIGINT REFERENCES servers(id) ON DELETE SET NULL,
    notes      VARCHAR(256),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (node_id, ip, port)
);
CREATE INDEX allocations_server ON allocations (server_id);
-- A server's primary allocation is one of its own; enforced once both rows exist.
ALTER TABLE servers ADD CONSTRAINT servers_allocation_fk
    FOREIGN KEY (allocation_id) REFERENCES allocations(id) DEFERRABLE INITIALLY DEFERRED;
CREATE UNIQUE INDEX servers_allocation_unique ON servers (allocation_id);

CREATE TABLE server_variables (
    id             BIGSERIAL PRIMARY KEY,
    server_id      BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    variable_id    BIGINT NOT NULL REFERENCES egg_variables(id) ON DELETE CASCADE,
    variable_value TEXT NOT NULL DEFAULT '',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (server_id, variable_id)
);

CREATE TABLE database_hosts (
    id            BIGSERIAL PRIMARY KEY,
    name          VARCHAR(191) NOT NULL,
    host          VARCHAR(191) NOT NULL,
    port          INTEGER NOT NULL,
    username      VARCHAR(191) NOT NULL,
    password      TEXT NOT NULL,
    max_databases BIGINT,
    node_id       BIGINT REFERENCES nodes(id) ON DELETE SET NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE databases (
    id               BIGSERIAL PRIMARY KEY,
    server_id        BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    database_host_id BIGINT NOT NULL REFERENCES database_hosts(id) ON DELETE RESTRICT,
    database         VARCHAR(191) NOT NULL,
    username         VARCHAR(191) NOT NULL,
    remote           VARCHAR(191) NOT NULL DEFAULT '%',
    password         TEXT NOT NULL,
    max_connections  BIGINT DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (database_host_id, database),
    UNIQUE (database_host_id, username)
);
CREATE INDEX databases_server ON databases (server_id);

CREATE TABLE subusers (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    server_id   BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    permissions JSONB NOT NULL DEFAULT '[]',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, server_id)
);
CREATE INDEX subusers_server ON subusers (server_id);

CREATE TABLE schedules (
    id                BIGSERIAL PRIMARY KEY,
    server_id         BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    name              VARCHAR(191) NOT NULL,
    cron_day_of_week  VARCHAR(191) NOT NULL,
    cron_month        VARCHAR(191) NOT NULL,
    cron_day_of_month VARCHAR(191) NOT NULL,
    cron_hour         VARCHAR(191) NOT NULL,
    cron_minute       VARCHAR(191) NOT NULL,
    is_active         BOOLEAN NOT NULL DEFAULT TRUE,
    is_processing     BOOLEAN NOT NULL DEFAULT FALSE,
    only_when_online  BOOLEAN NOT NULL DEFAULT FALSE,
    last_run_at       TIMESTAMPTZ,
    next_run_at       TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX schedules_server ON schedules (server_id);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE is_active AND NOT is_processing;

CREATE TABLE tasks (
    id                  BIGSERIAL PRIMARY KEY,
    schedule_id         BIGINT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    sequence_id         INTEGER NOT NULL,
    action              VARCHAR(191) NOT NULL,
    payload             TEXT NOT NULL DEFAULT '',
    time_offset         INTEGER NOT NULL DEFAULT 0,
    is_queued           BOOLEAN NOT NULL DEFAULT FALSE,
    continue_on_failure BOOLEAN NOT NULL DEFAULT FALSE,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tasks_schedule ON tasks (schedule_id, sequence_id);

CREATE TABLE backups (
    id            BIGSERIAL PRIMARY KEY,
    server_id     BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    uuid          UUID NOT NULL UNIQUE,
    upload_id     TEXT,
    is_successful BOOLEAN NOT NULL DEFAULT FALSE,
    is_locked     BOOLEAN NOT NULL DEFAULT FALSE,
    name          VARCHAR(191) NOT NULL,
    ignored_files JSONB NOT NULL DEFAULT '[]',
    disk          VARCHAR(191) NOT NULL,
    checksum      VARCHAR(191),
    bytes         BIGINT NOT NULL DEFAULT 0,
    completed_at  TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at    TIMESTAMPTZ
);
CREATE INDEX backups_server ON backups (server_id, created_at);

CREATE TABLE server_transfers (
    id                         BIGSERIAL PRIMARY KEY,
    server_id                  BIGINT NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    successful                 BOOLEAN,
    old_node                   BIGINT NOT NULL,
    new_node                   BIGINT NOT NULL,
    old_allocation             BIGINT NOT NULL,
    new_allocation             BIGINT NOT NULL,
    old_additional_allocations JSONB,
    new_additional_allocations JSONB,
    archived                   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at                 TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                 TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX server_transfers_server ON server_transfers (server_id);

CREATE TABLE activity_logs (
    id          BIGSERIAL PRIMARY KEY,
    batch       UUID,
    event       VARCHAR(191) NOT NULL,
    ip          VARCHAR(191),
    description TEXT,
    actor_type  VARCHAR(191),
    actor_id    BIGINT,
    api_key_id  BIGINT,
    properties  JSONB NOT NULL DEFAULT '{}',
    timestamp   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX activity_logs_actor ON activity_logs (actor_type, actor_id);
CREATE INDEX activity_logs_event ON activity_logs (event);

CREATE TABLE activity_log_subjects (
    id              BIGSERIAL PRIMARY KEY,
    activity_log_id BIGINT NOT NULL REFERENCES activity_logs(id) ON DELETE CASCADE,
    subject_type    VARCHAR(191) NOT NULL,
    subject_id      BIGINT NOT NULL
);
CREATE INDEX activity_log_subjects_subject ON activity_log_subjects (subject_type, subject_id);
CREATE INDEX activity_log_subjects_log ON activity_log_subjects (activity_log_id);
