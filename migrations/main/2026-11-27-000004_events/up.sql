-- The audit log (owned by event-worker) and the main database's transactional outbox
-- (each service writes its own rows; the relay publishes them).

CREATE TABLE audit_logs (
    id            UUID PRIMARY KEY,
    -- The event this entry records; unique so a redelivered event is recorded once.
    event_id      UUID NOT NULL,
    -- No foreign keys: the log outlives purged tenants and deleted users.
    tenant_id     UUID,
    actor_id      UUID,
    action        TEXT NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    request_id    TEXT,
    details       JSONB NOT NULL DEFAULT '{}',
    occurred_at   TIMESTAMPTZ NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT audit_logs_event_key UNIQUE (event_id)
);
CREATE INDEX audit_logs_tenant_time_idx ON audit_logs (tenant_id, occurred_at DESC);

CREATE TABLE outbox (
    -- The event id (the envelope's `id`).
    id            UUID PRIMARY KEY,
    topic         TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    payload       JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at  TIMESTAMPTZ,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    CONSTRAINT outbox_topic_not_blank CHECK (btrim(topic) <> '')
);
CREATE INDEX outbox_unpublished_idx ON outbox (created_at) WHERE published_at IS NULL;
