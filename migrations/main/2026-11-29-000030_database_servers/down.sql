DROP INDEX tenants_server_id_idx;
ALTER TABLE tenants DROP COLUMN server_id;
DROP TABLE database_servers;
