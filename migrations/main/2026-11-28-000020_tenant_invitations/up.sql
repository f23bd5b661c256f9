-- Invitations to join a tenant by email (owned by the tenant service). The link mailed
-- carries a random single-use token; only its SHA-256 is kept. A re-invitation of an
-- address still pending refreshes its row (new token, expiry, role and inviter), so a
-- tenant has at most one pending invitation per address.

CREATE TABLE tenant_invitations (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The invited address, normalised (trimmed, lower-cased).
    email       VARCHAR(255) NOT NULL,
    -- The role the membership gets when the invitation is accepted.
    role        TEXT NOT NULL,
    token_hash  BYTEA NOT NULL,
    -- The admin who sent it (last); NULL once that user is gone.
    invited_by  UUID REFERENCES users (id) ON DELETE SET NULL,
    -- When it was sent (last).
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    accepted_at TIMESTAMPTZ,
    accepted_by UUID REFERENCES users (id) ON DELETE SET NULL,
    revoked_at  TIMESTAMPTZ,
    CONSTRAINT tenant_invitations_role_check CHECK (role IN ('admin', 'user', 'viewer')),
    CONSTRAINT tenant_invitations_email_normalised
        CHECK (email = lower(btrim(email)) AND email <> ''),
    CONSTRAINT tenant_invitations_hash_key UNIQUE (token_hash),
    CONSTRAINT tenant_invitations_hash_length CHECK (octet_length(token_hash) = 32),
    CONSTRAINT tenant_invitations_expiry_after_creation CHECK (expires_at > created_at),
    -- Accepted or revoked, never both; only an accepted one names who accepted it.
    CONSTRAINT tenant_invitations_one_outcome CHECK (accepted_at IS NULL OR revoked_at IS NULL),
    CONSTRAINT tenant_invitations_accepted_by CHECK (accepted_by IS NULL OR accepted_at IS NOT NULL)
);

-- One pending (neither accepted nor revoked, expired or not) invitation per address and
-- tenant; it also serves the tenant's list of pending invitations.
CREATE UNIQUE INDEX tenant_invitations_pending_key ON tenant_invitations (tenant_id, email)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;
CREATE INDEX tenant_invitations_pending_idx ON tenant_invitations (tenant_id, created_at DESC)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;
