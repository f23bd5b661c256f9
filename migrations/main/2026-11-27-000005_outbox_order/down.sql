DROP INDEX outbox_unpublished_idx;
ALTER TABLE outbox DROP COLUMN seq;
CREATE INDEX outbox_unpublished_idx ON outbox (created_at) WHERE published_at IS NULL;
