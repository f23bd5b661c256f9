ALTER TABLE tenants DROP COLUMN database_purged_at;
