ALTER TABLE notifications
    DROP CONSTRAINT notifications_link_sealed_whole,
    DROP COLUMN link_key_id,
    DROP COLUMN link_sealed,
    DROP COLUMN link_ref,
    DROP COLUMN html_body;
ALTER TABLE tenants DROP COLUMN sso_directory_id;
DROP TABLE user_email_tokens;
ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_session_fkey;
DROP TABLE user_sessions;
ALTER TABLE users
    DROP COLUMN tokens_valid_after,
    DROP COLUMN password_changed_at,
    DROP COLUMN password_proven,
    DROP COLUMN is_platform_admin,
    DROP COLUMN email_verified_at;
