-- Multipart uploads in flight (issue 19): recorded before an upload's first part goes to
-- S3, removed when it is completed or aborted. What a killed service leaves here is
-- aborted by the document service's sweep once older than UPLOAD_STALE_SECS, so no part
-- stays on the S3 server (docs/DESIGN-NOTES.md, "Uploads streamed to S3").
CREATE TABLE pending_uploads (
    s3_key     TEXT PRIMARY KEY,
    upload_id  TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX pending_uploads_started_idx ON pending_uploads (started_at);
