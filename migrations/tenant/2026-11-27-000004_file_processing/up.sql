-- What the event-worker found when it re-read a stored file (file.process), and the
-- event ids it applied in this database (recorded in the same transaction).
ALTER TABLE files
    ADD COLUMN processing_status  TEXT NOT NULL DEFAULT 'pending',
    ADD COLUMN detected_mime_type TEXT,
    ADD COLUMN processed_at       TIMESTAMPTZ,
    ADD CONSTRAINT files_processing_status_check
        CHECK (processing_status IN ('pending', 'processed', 'mismatch'));

CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT processed_events_pkey PRIMARY KEY (consumer, event_id)
);
