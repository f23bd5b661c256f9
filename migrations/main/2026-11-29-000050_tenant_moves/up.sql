-- Moves of a tenant's database from one server to another (`tenant move`;
-- docs/OPERATIONS.md, "Moving a tenant"). A move is recorded before it changes
-- anything, so a move that was interrupted is resumed or rolled back from here.
CREATE TABLE tenant_moves (
    id                UUID PRIMARY KEY,
    tenant_id         UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    from_server       UUID NOT NULL REFERENCES database_servers (id),
    to_server         UUID NOT NULL REFERENCES database_servers (id),
    -- copying: the source is read-only and being copied (the tenant is still on it);
    -- switched: the tenant is on the target, the source kept (read-only) until
    -- drop_source_after; done: the source dropped; rolled_back: the target dropped,
    -- the source writable again.
    state             TEXT NOT NULL DEFAULT 'copying',
    started_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Written every few seconds by the process running the move: a copying move whose
    -- heartbeat stopped was interrupted.
    heartbeat_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    read_only_at      TIMESTAMPTZ,
    switched_at       TIMESTAMPTZ,
    drop_source_after TIMESTAMPTZ,
    finished_at       TIMESTAMPTZ,
    -- What was verified: per table, rows and checksum.
    verified          JSONB,
    error             TEXT,
    CONSTRAINT tenant_moves_state_check
        CHECK (state IN ('copying', 'switched', 'done', 'rolled_back')),
    CONSTRAINT tenant_moves_two_servers CHECK (from_server <> to_server)
);

-- At most one unfinished move per tenant.
CREATE UNIQUE INDEX tenant_moves_open_idx ON tenant_moves (tenant_id)
    WHERE state IN ('copying', 'switched');
