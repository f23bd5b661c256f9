-- Event ids each consumer has applied (owned by event-worker). A consumer records the
-- ids in the same transaction as its effect, so a redelivered event has no second one.
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT processed_events_pkey PRIMARY KEY (consumer, event_id)
);
-- For pruning old ids (redeliveries come within hours, not months).
CREATE INDEX processed_events_time_idx ON processed_events (processed_at);
-- The audit log filtered by type within a tenant.
CREATE INDEX audit_logs_tenant_action_time_idx ON audit_logs (tenant_id, action, occurred_at DESC);
