-- Stored files (deduplicated content) and the documents that name them.

CREATE TABLE files (
    id          UUID PRIMARY KEY,
    -- Deduplication per tenant is decided by this unique constraint.
    md5_hash    CHAR(32) NOT NULL,
    sha256_hash CHAR(64) NOT NULL,
    s3_path     TEXT NOT NULL,
    file_size   BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT files_md5_hash_key UNIQUE (md5_hash),
    CONSTRAINT files_s3_path_key UNIQUE (s3_path),
    CONSTRAINT files_md5_shape CHECK (md5_hash ~ '^[0-9a-f]{32}$'),
    CONSTRAINT files_sha256_shape CHECK (sha256_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT files_size_not_negative CHECK (file_size >= 0)
);

CREATE TABLE documents (
    id                UUID PRIMARY KEY,
    filename          VARCHAR(255) NOT NULL,
    mime_type         VARCHAR(255) NOT NULL,
    file_id           UUID NOT NULL REFERENCES files (id) ON DELETE RESTRICT,
    -- Users live in the main database: no foreign key across databases.
    user_id           UUID NOT NULL,
    created_by        UUID NOT NULL,
    processing_status TEXT NOT NULL DEFAULT 'pending',
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT documents_filename_check
        CHECK (btrim(filename) <> '' AND strpos(filename, '/') = 0 AND strpos(filename, E'\\') = 0),
    CONSTRAINT documents_mime_type_check CHECK (mime_type ~ '^[^/[:space:]]+/[^/[:space:]]+$'),
    CONSTRAINT documents_processing_status_check
        CHECK (processing_status IN ('pending', 'processed', 'mismatch'))
);
CREATE INDEX documents_file_idx ON documents (file_id);
CREATE INDEX documents_created_idx ON documents (created_at DESC, id);
CREATE INDEX documents_user_idx ON documents (user_id);
