-- Per-tenant Entra ID configuration and the identities it produced (owned by sso).
-- Secrets and tokens are stored encrypted, with the id of the key that encrypted them.

CREATE TABLE tenant_sso_configs (
    id                       UUID PRIMARY KEY,
    tenant_id                UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider                 TEXT NOT NULL DEFAULT 'azure_ad',
    provider_tenant_id       TEXT NOT NULL,
    client_id                TEXT NOT NULL,
    client_secret_encrypted  TEXT,
    encryption_key_id        TEXT,
    redirect_uri             TEXT,
    is_enabled               BOOLEAN NOT NULL DEFAULT FALSE,
    config_metadata          JSONB NOT NULL DEFAULT '{}',
    auto_provisioning        BOOLEAN NOT NULL DEFAULT FALSE,
    default_role             TEXT NOT NULL DEFAULT 'viewer',
    sync_attributes_on_login BOOLEAN NOT NULL DEFAULT TRUE,
    allowed_email_domains    TEXT[] NOT NULL DEFAULT '{}',
    allowed_azure_groups     TEXT[] NOT NULL DEFAULT '{}',
    group_role_mapping       JSONB NOT NULL DEFAULT '{}',
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- One SSO configuration per tenant.
    CONSTRAINT tenant_sso_configs_tenant_key UNIQUE (tenant_id),
    CONSTRAINT tenant_sso_configs_provider_check CHECK (provider IN ('azure_ad')),
    CONSTRAINT tenant_sso_configs_default_role_check CHECK (default_role IN ('admin', 'user', 'viewer')),
    CONSTRAINT tenant_sso_configs_secret_has_key
        CHECK (client_secret_encrypted IS NULL OR encryption_key_id IS NOT NULL)
);

CREATE TABLE user_azure_identities (
    id                      UUID PRIMARY KEY,
    user_id                 UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id               UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    azure_tenant_id         TEXT NOT NULL,
    azure_object_id         TEXT NOT NULL,
    azure_upn               TEXT,
    azure_display_name      TEXT,
    access_token_encrypted  TEXT,
    refresh_token_encrypted TEXT,
    id_token_encrypted      TEXT,
    encryption_key_id       TEXT,
    token_expires_at        TIMESTAMPTZ,
    needs_reauth            BOOLEAN NOT NULL DEFAULT FALSE,
    last_sync               TIMESTAMPTZ,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- An identity is keyed on the Entra tenant and object id, never on the email.
    CONSTRAINT user_azure_identities_identity_key UNIQUE (tenant_id, azure_tenant_id, azure_object_id),
    CONSTRAINT user_azure_identities_user_tenant_key UNIQUE (user_id, tenant_id),
    CONSTRAINT user_azure_identities_tokens_have_key
        CHECK ((access_token_encrypted IS NULL AND refresh_token_encrypted IS NULL
                AND id_token_encrypted IS NULL) OR encryption_key_id IS NOT NULL)
);
CREATE INDEX user_azure_identities_token_expiry_idx
    ON user_azure_identities (token_expires_at) WHERE refresh_token_encrypted IS NOT NULL;
