-- Account lifecycle (owned by the auth service): verified emails, platform admins,
-- sessions that can be listed and revoked, and single-use tokens sent by email.

ALTER TABLE users
    -- NULL until the user proves control of the mailbox (a verification or reset link,
    -- or an SSO sign-in whose directory asserts a verified domain).
    ADD COLUMN email_verified_at   TIMESTAMPTZ,
    -- Platform administrators (`tenant init --create-admin`): may deactivate users and
    -- enter SSO-only tenants with a password session (audited).
    ADD COLUMN is_platform_admin   BOOLEAN NOT NULL DEFAULT FALSE,
    -- The password was set through a reset link, or changed from such a password: its
    -- holder proved control of the mailbox. A password chosen at registration was not,
    -- and is removed when a directory identity is linked to the account by email.
    ADD COLUMN password_proven     BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN password_changed_at TIMESTAMPTZ,
    -- Every token issued before this instant is refused (password reset, deactivation,
    -- sign out everywhere); a login checks that it did not move while it ran.
    ADD COLUMN tokens_valid_after  TIMESTAMPTZ;

-- A session is a refresh-token family: `id` is the `fam` claim of its tokens.
CREATE TABLE user_sessions (
    id               UUID PRIMARY KEY,
    user_id          UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The expiry of its newest refresh token.
    expires_at       TIMESTAMPTZ NOT NULL,
    user_agent       VARCHAR(512),
    client_address   VARCHAR(64),
    -- How the session was obtained: `pwd` (password) or `sso` (a tenant's SSO login,
    -- then the platform tenant and the directory, Entra's `tid`).
    amr              TEXT NOT NULL DEFAULT 'pwd',
    sso_tenant_id    UUID,
    sso_directory_id TEXT,
    revoked_at       TIMESTAMPTZ,
    revoked_reason   TEXT,
    CONSTRAINT user_sessions_amr_check CHECK (amr IN ('pwd', 'sso')),
    CONSTRAINT user_sessions_sso_origin
        CHECK ((amr = 'sso') = (sso_tenant_id IS NOT NULL AND sso_directory_id IS NOT NULL))
);
CREATE INDEX user_sessions_user_idx ON user_sessions (user_id, created_at DESC);
CREATE INDEX user_sessions_sso_idx ON user_sessions (user_id, sso_tenant_id)
    WHERE amr = 'sso' AND revoked_at IS NULL;

-- Sessions of the refresh tokens issued before this migration.
INSERT INTO user_sessions (id, user_id, created_at, last_used_at, expires_at, revoked_at, revoked_reason)
SELECT family_id,
       (array_agg(user_id))[1],
       min(issued_at),
       max(coalesce(used_at, issued_at)),
       max(expires_at),
       max(revoked_at),
       (array_agg(revoked_reason) FILTER (WHERE revoked_reason IS NOT NULL))[1]
FROM refresh_tokens
GROUP BY family_id;

ALTER TABLE refresh_tokens
    ADD CONSTRAINT refresh_tokens_session_fkey
    FOREIGN KEY (family_id) REFERENCES user_sessions (id) ON DELETE CASCADE;

-- Single-use tokens mailed to a user: only their SHA-256 is kept.
CREATE TABLE user_email_tokens (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    token_hash BYTEA NOT NULL,
    -- The address the token was sent to: it verifies that address only.
    email      VARCHAR(255) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    CONSTRAINT user_email_tokens_purpose_check CHECK (purpose IN ('verify_email', 'reset_password')),
    CONSTRAINT user_email_tokens_hash_key UNIQUE (token_hash),
    CONSTRAINT user_email_tokens_hash_length CHECK (octet_length(token_hash) = 32),
    CONSTRAINT user_email_tokens_expiry_after_creation CHECK (expires_at > created_at)
);
CREATE INDEX user_email_tokens_user_idx ON user_email_tokens (user_id, purpose);

-- The directory (Entra `tid`) of a tenant's SSO configuration, mirrored by the sso
-- service like the other SSO settings: SSO-only tenants admit only its tokens.
ALTER TABLE tenants ADD COLUMN sso_directory_id TEXT;
UPDATE tenants t SET sso_directory_id = c.provider_tenant_id
FROM tenant_sso_configs c WHERE c.tenant_id = t.id;

-- Emails with a secret link (verification, password reset): the body holds `{{link}}`,
-- and the link is kept sealed by the keyring until the email is sent, then dropped.
ALTER TABLE notifications
    ADD COLUMN html_body     TEXT,
    ADD COLUMN link_ref      TEXT,
    ADD COLUMN link_sealed   TEXT,
    ADD COLUMN link_key_id   TEXT,
    ADD CONSTRAINT notifications_link_sealed_whole
        CHECK ((link_sealed IS NULL) = (link_key_id IS NULL)
               AND (link_sealed IS NULL OR link_ref IS NOT NULL));
