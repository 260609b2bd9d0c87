-- Latchkey's one schema (PostgreSQL >= 14). Later migrations add, never rewrite.
-- Times are timestamptz; ids are uuid except where a dense integer is wanted
-- (products: they travel in every snapshot record as a u32).

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- ---------------------------------------------------------------- admins

CREATE TABLE admin_users (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username        text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    email           text,
    password_hash   text NOT NULL,                       -- argon2id PHC string
    role            text NOT NULL CHECK (role IN ('admin', 'viewer')),
    totp_secret     bytea,                               -- sealed with SECRET_KEY
    totp_enabled_at timestamptz,
    disabled_at     timestamptz,
    last_login_at   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE admin_recovery_codes (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_id  uuid NOT NULL REFERENCES admin_users (id) ON DELETE CASCADE,
    code_hash text NOT NULL,                             -- argon2id
    used_at   timestamptz
);
CREATE INDEX admin_recovery_codes_admin ON admin_recovery_codes (admin_id) WHERE used_at IS NULL;

CREATE TABLE admin_sessions (
    id_hash      bytea PRIMARY KEY,                      -- BLAKE3 of the cookie value
    admin_id     uuid NOT NULL REFERENCES admin_users (id) ON DELETE CASCADE,
    csrf_token   text NOT NULL,
    mfa_passed   boolean NOT NULL DEFAULT false,
    ip           inet,
    user_agent   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX admin_sessions_admin ON admin_sessions (admin_id) WHERE revoked_at IS NULL;

CREATE TABLE login_attempts (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username text,
    ip       inet NOT NULL,
    success  boolean NOT NULL,
    reason   text,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_attempts_ip ON login_attempts (ip, at DESC);
CREATE INDEX login_attempts_username ON login_attempts (username, at DESC);

CREATE TABLE blocked_ips (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    network    cidr NOT NULL,
    reason     text NOT NULL,
    blocked_by uuid REFERENCES admin_users (id) ON DELETE SET NULL,  -- NULL: automatic
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,                              -- NULL: until lifted
    lifted_at  timestamptz,
    lifted_by  uuid REFERENCES admin_users (id) ON DELETE SET NULL
);
CREATE INDEX blocked_ips_active ON blocked_ips USING gist (network inet_ops) WHERE lifted_at IS NULL;

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    prefix       text NOT NULL UNIQUE,                   -- shown in lists; the secret never is
    secret_hash  bytea NOT NULL,                         -- BLAKE3 keyed with SECRET_KEY
    scopes       text[] NOT NULL,
    created_by   uuid REFERENCES admin_users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);

CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    request_id  text NOT NULL,
    actor_kind  text NOT NULL CHECK (actor_kind IN ('admin', 'api_key', 'client', 'system')),
    actor_id    text,
    actor_name  text,
    action      text NOT NULL,
    entity_kind text NOT NULL,
    entity_id   text,
    before      jsonb,
    after       jsonb,
    ip          inet,
    user_agent  text
);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_actor ON audit_log (actor_id, at DESC);
CREATE INDEX audit_log_action ON audit_log (action, at DESC);
CREATE INDEX audit_log_entity ON audit_log (entity_kind, entity_id, at DESC);
CREATE INDEX audit_log_request ON audit_log (request_id);

-- ---------------------------------------------------------------- catalogue

CREATE TABLE customers (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    email      text,
    company    text,
    notes      text,
    metadata   jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customers_name_trgm ON customers USING gin (name gin_trgm_ops);
CREATE INDEX customers_email ON customers (lower(email));

CREATE TABLE products (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE releases (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    product_id   integer NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    version      text NOT NULL,                          -- semver, checked by control
    channel      text NOT NULL DEFAULT 'stable' CHECK (channel ~ '^[a-z0-9-]{1,32}$'),
    published_at timestamptz,                            -- NULL: draft
    download_url text,
    notes        text,
    min_allowed  boolean NOT NULL DEFAULT false,         -- versions below this are refused
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (product_id, channel, version)
);

CREATE TABLE feature_flags (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key             text NOT NULL CHECK (key ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    product_id      integer REFERENCES products (id) ON DELETE CASCADE,
    enabled         boolean NOT NULL DEFAULT false,
    rollout_percent smallint NOT NULL DEFAULT 100 CHECK (rollout_percent BETWEEN 0 AND 100),
    description     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX feature_flags_key ON feature_flags (key, coalesce(product_id, 0));

-- ---------------------------------------------------------------- licenses

CREATE TABLE licenses (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key_hash               bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    key_prefix             text NOT NULL,                -- first group, for lists and search
    key_sealed             bytea NOT NULL,               -- the key, sealed with SECRET_KEY
    customer_id            uuid REFERENCES customers (id) ON DELETE RESTRICT,
    product_id             integer NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    kind                   text NOT NULL CHECK (kind IN ('full', 'trial', 'test')),
    status                 text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'revoked')),
    valid_from             timestamptz NOT NULL DEFAULT now(),
    valid_until            timestamptz,                  -- NULL: perpetual
    device_limit           integer NOT NULL CHECK (device_limit >= 0),
    session_limit          integer NOT NULL DEFAULT 0 CHECK (session_limit BETWEEN 0 AND 65535),
    allow_session_takeover boolean NOT NULL DEFAULT false,
    grace_period_secs      integer CHECK (grace_period_secs >= 0),
    features               text[] NOT NULL DEFAULT '{}',
    usage_limits           jsonb NOT NULL DEFAULT '{}',  -- {"metric": limit per month}
    usage_exhausted        boolean NOT NULL DEFAULT false,
    metadata               jsonb NOT NULL DEFAULT '{}',
    batch_id               uuid,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_until IS NULL OR valid_until > valid_from)
);
CREATE INDEX licenses_customer ON licenses (customer_id);
CREATE INDEX licenses_product ON licenses (product_id, status);
CREATE INDEX licenses_expiring ON licenses (valid_until) WHERE status = 'active' AND valid_until IS NOT NULL;
CREATE INDEX licenses_batch ON licenses (batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX licenses_created ON licenses (created_at DESC, id);
CREATE INDEX licenses_key_prefix ON licenses (key_prefix);

CREATE TABLE devices (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    license_id          uuid NOT NULL REFERENCES licenses (id) ON DELETE CASCADE,
    fingerprint_hash    bytea NOT NULL CHECK (length(fingerprint_hash) = 32),
    digest              bytea NOT NULL CHECK (length(digest) = 24),  -- what edges match on
    components          jsonb NOT NULL,                  -- the canonical fingerprint
    name                text,
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deactivated')),
    app_version         text,
    ip                  inet,
    first_seen_at       timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    deactivated_at      timestamptz,
    deactivation_reason text
);
CREATE UNIQUE INDEX devices_active_fingerprint ON devices (license_id, fingerprint_hash) WHERE status = 'active';
CREATE INDEX devices_license ON devices (license_id, status);

CREATE TABLE device_transfers (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    license_id     uuid NOT NULL REFERENCES licenses (id) ON DELETE CASCADE,
    from_device_id uuid REFERENCES devices (id) ON DELETE SET NULL,
    to_device_id   uuid REFERENCES devices (id) ON DELETE SET NULL,
    at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_transfers_license ON device_transfers (license_id, at DESC);

-- A retried activation or transfer (same idempotency key) gets the first answer.
CREATE TABLE idempotent_requests (
    license_id      uuid NOT NULL REFERENCES licenses (id) ON DELETE CASCADE,
    idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 128),
    response        jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (license_id, idempotency_key)
);

CREATE TABLE sessions (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    license_id        uuid NOT NULL REFERENCES licenses (id) ON DELETE CASCADE,
    device_id         uuid REFERENCES devices (id) ON DELETE SET NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
    token_expires_at  timestamptz NOT NULL,
    ended_at          timestamptz,
    end_reason        text CHECK (end_reason IN ('client', 'takeover', 'reaped', 'admin', 'license')),
    edge_id           uuid,
    ip                inet,
    app_version       text
);
CREATE INDEX sessions_open ON sessions (license_id, started_at) WHERE ended_at IS NULL;
CREATE INDEX sessions_stale ON sessions (last_heartbeat_at) WHERE ended_at IS NULL;
CREATE INDEX sessions_recent ON sessions (started_at DESC);

-- Usage records from edges: one row per heartbeat or session event, one per
-- license, device and minute for verifications (with a count).
CREATE TABLE license_heartbeats (
    at          timestamptz NOT NULL,
    license_id  uuid NOT NULL,
    device_id   uuid,
    session_id  uuid,
    kind        text NOT NULL CHECK (kind IN ('verify', 'heartbeat', 'session_start', 'session_end', 'activation')),
    count       integer NOT NULL DEFAULT 1 CHECK (count > 0),
    edge_id     uuid,
    app_version text,
    ip          inet
) PARTITION BY RANGE (at);
CREATE INDEX license_heartbeats_license ON license_heartbeats (license_id, at);

-- Creates the monthly partitions from `first`'s month through `months` more.
CREATE FUNCTION latchkey_ensure_heartbeat_partitions(first date, months integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    created integer := 0;
    month_start date;
    name text;
BEGIN
    FOR i IN 0..months LOOP
        month_start := (date_trunc('month', first) + make_interval(months => i))::date;
        name := format('license_heartbeats_%s', to_char(month_start, 'YYYY_MM'));
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF license_heartbeats FOR VALUES FROM (%L) TO (%L)',
                name, month_start, (month_start + interval '1 month')::date);
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END $$;

SELECT latchkey_ensure_heartbeat_partitions(current_date, 3);

-- Usage batches already committed: a redelivered batch is dropped.
CREATE TABLE ingested_batches (
    batch_id     uuid PRIMARY KEY,
    edge_id      uuid,
    records      integer NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
);

-- Usage-limit accounting per license, metric and month.
CREATE TABLE usage_counters (
    license_id   uuid NOT NULL REFERENCES licenses (id) ON DELETE CASCADE,
    metric       text NOT NULL,
    period_start date NOT NULL,
    used         bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
    PRIMARY KEY (license_id, metric, period_start)
);

-- ---------------------------------------------------------------- resources

CREATE TABLE resources (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN ('domain', 'ip', 'phone')),
    value             text NOT NULL CHECK (length(value) BETWEEN 1 AND 255),
    status            text NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'allocated', 'quarantined')),
    license_id        uuid REFERENCES licenses (id) ON DELETE SET NULL,
    allocated_at      timestamptz,
    quarantined_until timestamptz,
    notes             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, value),
    CHECK ((status = 'allocated') = (license_id IS NOT NULL))
);
CREATE INDEX resources_available ON resources (kind, id) WHERE status = 'available';
CREATE INDEX resources_license ON resources (license_id) WHERE license_id IS NOT NULL;

CREATE TABLE resource_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    resource_id bigint NOT NULL REFERENCES resources (id) ON DELETE CASCADE,
    action      text NOT NULL CHECK (action IN ('added', 'allocated', 'released', 'quarantined', 'restored')),
    license_id  uuid,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX resource_history_resource ON resource_history (resource_id, at DESC);

-- ---------------------------------------------------------------- edges and snapshots

CREATE TABLE edges (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name              text NOT NULL UNIQUE,
    enrol_token_hash  bytea,                             -- one-time; cleared on enrolment
    identity_hash     bytea UNIQUE,                      -- of the edge's certificate
    enrolled_at       timestamptz,
    revoked_at        timestamptz,
    last_seen_at      timestamptz,
    snapshot_sequence bigint,
    version           text,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Every license-affecting change, written in the change's transaction; the
-- publisher turns unpublished rows into numbered deltas.
CREATE TABLE snapshot_outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity_kind  text NOT NULL CHECK (entity_kind IN ('license', 'product', 'flags', 'config', 'session')),
    entity_id    text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_in bigint                                  -- snapshot sequence
);
CREATE INDEX snapshot_outbox_pending ON snapshot_outbox (id) WHERE published_in IS NULL;

CREATE TABLE snapshots (
    sequence      bigint PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('full', 'delta')),
    base_sequence bigint,
    key_id        text NOT NULL,
    size_bytes    bigint NOT NULL,
    licenses      bigint,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE settings (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE backups (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    status      text NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    path        text,
    size_bytes  bigint,
    error       text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    created_by  uuid REFERENCES admin_users (id) ON DELETE SET NULL
);

-- ---------------------------------------------------------------- lead CRM

CREATE TABLE lead_institutions (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
    kind       text,
    website    text,
    country    text,
    city       text,
    address    text,
    stage      text NOT NULL DEFAULT 'new' CHECK (stage IN ('new', 'contacted', 'qualified', 'proposal', 'won', 'lost')),
    owner_id   uuid REFERENCES admin_users (id) ON DELETE SET NULL,
    extra      jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lead_institutions_name_trgm ON lead_institutions USING gin (name gin_trgm_ops);
CREATE INDEX lead_institutions_stage ON lead_institutions (stage, updated_at DESC);

CREATE TABLE lead_contacts (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    institution_id uuid REFERENCES lead_institutions (id) ON DELETE CASCADE,
    full_name      text NOT NULL CHECK (length(full_name) BETWEEN 1 AND 256),
    title          text,
    extra          jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lead_contacts_institution ON lead_contacts (institution_id);
CREATE INDEX lead_contacts_name_trgm ON lead_contacts USING gin (full_name gin_trgm_ops);

CREATE TABLE lead_contact_details (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contact_id uuid NOT NULL REFERENCES lead_contacts (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('phone', 'email')),
    value      text NOT NULL CHECK (length(value) BETWEEN 1 AND 256),
    label      text,
    is_primary boolean NOT NULL DEFAULT false,
    UNIQUE (contact_id, kind, value)
);
CREATE INDEX lead_contact_details_value ON lead_contact_details (kind, lower(value));

CREATE TABLE lead_notes (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    institution_id  uuid REFERENCES lead_institutions (id) ON DELETE CASCADE,
    contact_id      uuid REFERENCES lead_contacts (id) ON DELETE CASCADE,
    current_version integer NOT NULL DEFAULT 1,
    extra           jsonb NOT NULL DEFAULT '{}',
    created_by      uuid REFERENCES admin_users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    CHECK (institution_id IS NOT NULL OR contact_id IS NOT NULL)
);
CREATE INDEX lead_notes_institution ON lead_notes (institution_id, updated_at DESC);
CREATE INDEX lead_notes_contact ON lead_notes (contact_id, updated_at DESC);

CREATE TABLE lead_note_versions (
    note_id   uuid NOT NULL REFERENCES lead_notes (id) ON DELETE CASCADE,
    version   integer NOT NULL,
    body      text NOT NULL,
    edited_by uuid REFERENCES admin_users (id) ON DELETE SET NULL,
    edited_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (note_id, version)
);
