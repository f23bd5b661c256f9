-- Email notifications (owned by event-worker): one row per event, recipient and
-- template, created with the processed event id; a sender loop delivers them over SMTP.
CREATE TABLE notifications (
    id              UUID PRIMARY KEY,
    event_id        UUID NOT NULL,
    recipient       TEXT NOT NULL,
    template        TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at         TIMESTAMPTZ,
    CONSTRAINT notifications_status_check CHECK (status IN ('pending', 'sent', 'failed')),
    CONSTRAINT notifications_once UNIQUE (event_id, recipient, template)
);
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at) WHERE status = 'pending';
