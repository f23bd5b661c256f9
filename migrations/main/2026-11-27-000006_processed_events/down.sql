DROP INDEX IF EXISTS audit_logs_tenant_action_time_idx;
DROP TABLE IF EXISTS processed_events;
