DROP TABLE outbox;
DROP TABLE audit_logs;
