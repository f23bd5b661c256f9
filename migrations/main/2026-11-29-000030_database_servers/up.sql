-- The PostgreSQL servers that hold tenant databases, and the server of each tenant
-- (docs/OPERATIONS.md, "Database servers"). A server's connection URLs are never
-- stored: each is the name of a setting the services read like any secret (from the
-- environment, a `<NAME>_FILE`, or Vault with USE_VAULT). The main database's own
-- server is registered here as the first, `main`, so an existing deployment keeps
-- every tenant where it is and changes nothing.

CREATE TABLE database_servers (
    id            UUID PRIMARY KEY,
    name          TEXT NOT NULL,
    -- The setting holding the URL for administration and migrations (CREATE/DROP
    -- DATABASE, the template, session-level locks: never a transaction pooler).
    admin_url_ref TEXT NOT NULL,
    -- The setting holding the URL for request traffic (may be a PgBouncer).
    url_ref       TEXT NOT NULL,
    -- active: receives new tenants; draining: keeps its tenants, gets no new ones;
    -- disabled: holds no tenant and gets none.
    state         TEXT NOT NULL DEFAULT 'active',
    -- New tenants are spread in proportion to the weights of the active servers.
    weight        INTEGER NOT NULL DEFAULT 100,
    -- A server holding this many tenants gets no more (NULL: no limit).
    max_tenants   INTEGER,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT database_servers_name_key UNIQUE (name),
    CONSTRAINT database_servers_name_shape CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    CONSTRAINT database_servers_ref_shape
        CHECK (admin_url_ref ~ '^[A-Z][A-Z0-9_]{0,127}$' AND url_ref ~ '^[A-Z][A-Z0-9_]{0,127}$'),
    CONSTRAINT database_servers_state_check CHECK (state IN ('active', 'draining', 'disabled')),
    CONSTRAINT database_servers_weight_range CHECK (weight BETWEEN 1 AND 10000),
    CONSTRAINT database_servers_max_tenants_positive CHECK (max_tenants IS NULL OR max_tenants > 0)
);

INSERT INTO database_servers (id, name, admin_url_ref, url_ref)
VALUES ('00000000-0000-0000-0000-000000000001', 'main', 'DATABASE_ADMIN_URL', 'DATABASE_URL');

-- Every existing tenant is on the main server; a new one gets the server placement
-- chose. The default stays for the replicas of the previous release, which insert
-- tenants without a server during a rolling upgrade (they only know `main`); a later
-- migration drops it once no such release can be running.
ALTER TABLE tenants
    ADD COLUMN server_id UUID NOT NULL DEFAULT '00000000-0000-0000-0000-000000000001'
        REFERENCES database_servers (id);
CREATE INDEX tenants_server_id_idx ON tenants (server_id);
