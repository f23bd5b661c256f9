-- Tenants and memberships (owned by the tenant service).

CREATE TABLE tenants (
    id                    UUID PRIMARY KEY,
    name                  VARCHAR(255) NOT NULL,
    database_name         VARCHAR(63) NOT NULL,
    is_active             BOOLEAN NOT NULL DEFAULT TRUE,
    status                TEXT NOT NULL DEFAULT 'provisioning',
    -- Why provisioning failed; NULL otherwise.
    status_reason         TEXT,
    auth_method           TEXT NOT NULL DEFAULT 'local',
    sso_domain_whitelist  TEXT[] NOT NULL DEFAULT '{}',
    sso_auto_provisioning BOOLEAN NOT NULL DEFAULT FALSE,
    sso_default_role      TEXT NOT NULL DEFAULT 'viewer',
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by            UUID REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT tenants_database_name_key UNIQUE (database_name),
    CONSTRAINT tenants_database_name_shape
        CHECK (database_name ~ '^tenant_[a-z0-9_]+_[0-9a-f]{8}$' AND octet_length(database_name) <= 63),
    CONSTRAINT tenants_name_not_blank CHECK (btrim(name) <> ''),
    CONSTRAINT tenants_status_check
        CHECK (status IN ('provisioning', 'active', 'failed', 'deleted')),
    CONSTRAINT tenants_auth_method_check CHECK (auth_method IN ('local', 'sso', 'both')),
    CONSTRAINT tenants_sso_default_role_check CHECK (sso_default_role IN ('admin', 'user', 'viewer'))
);
CREATE INDEX tenants_created_by_idx ON tenants (created_by);

CREATE TABLE user_tenant_associations (
    user_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    role      TEXT NOT NULL,
    joined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, tenant_id),
    CONSTRAINT user_tenant_associations_role_check CHECK (role IN ('admin', 'user', 'viewer'))
);
CREATE INDEX user_tenant_associations_tenant_idx ON user_tenant_associations (tenant_id);
