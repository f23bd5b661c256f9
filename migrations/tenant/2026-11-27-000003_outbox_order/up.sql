-- Events committed in one transaction share `created_at` (now() is the transaction's
-- start), so the relay publishes in the order of a sequence instead.
ALTER TABLE outbox ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;
DROP INDEX outbox_unpublished_idx;
CREATE INDEX outbox_unpublished_idx ON outbox (seq) WHERE published_at IS NULL;
