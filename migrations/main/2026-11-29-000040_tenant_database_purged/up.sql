-- When a tenant's database was dropped by its purge. A database on another server than
-- the main one cannot be looked up in the main server's pg_database: this marker says
-- the tenant holds no database any more (placement counts, the per-creator limit, the
-- internal API, migrations). Tenants purged before it existed are marked from
-- pg_database, which held every tenant database until now.
ALTER TABLE tenants ADD COLUMN database_purged_at TIMESTAMPTZ;

UPDATE tenants t SET database_purged_at = t.updated_at
WHERE t.status = 'deleted'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_database d WHERE d.datname = t.database_name);
