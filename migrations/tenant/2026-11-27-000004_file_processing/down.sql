DROP TABLE IF EXISTS processed_events;
ALTER TABLE files
    DROP CONSTRAINT IF EXISTS files_processing_status_check,
    DROP COLUMN IF EXISTS processed_at,
    DROP COLUMN IF EXISTS detected_mime_type,
    DROP COLUMN IF EXISTS processing_status;
