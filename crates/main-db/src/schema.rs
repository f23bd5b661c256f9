// @generated automatically by Diesel CLI.

diesel::table! {
    audit_logs (id) {
        id -> Uuid,
        event_id -> Uuid,
        tenant_id -> Nullable<Uuid>,
        actor_id -> Nullable<Uuid>,
        action -> Text,
        resource_type -> Nullable<Text>,
        resource_id -> Nullable<Text>,
        request_id -> Nullable<Text>,
        details -> Jsonb,
        occurred_at -> Timestamptz,
        recorded_at -> Timestamptz,
    }
}

diesel::table! {
    database_servers (id) {
        id -> Uuid,
        name -> Text,
        admin_url_ref -> Text,
        url_ref -> Text,
        state -> Text,
        weight -> Int4,
        max_tenants -> Nullable<Int4>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    notifications (id) {
        id -> Uuid,
        event_id -> Uuid,
        recipient -> Text,
        template -> Text,
        subject -> Text,
        body -> Text,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        sent_at -> Nullable<Timestamptz>,
        html_body -> Nullable<Text>,
        link_ref -> Nullable<Text>,
        link_sealed -> Nullable<Text>,
        link_key_id -> Nullable<Text>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Uuid,
        topic -> Text,
        partition_key -> Text,
        payload -> Jsonb,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        seq -> Int8,
    }
}

diesel::table! {
    processed_events (consumer, event_id) {
        consumer -> Text,
        event_id -> Uuid,
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    refresh_tokens (jti) {
        jti -> Uuid,
        user_id -> Uuid,
        family_id -> Uuid,
        parent_jti -> Nullable<Uuid>,
        issued_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    tenant_invitations (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        #[max_length = 255]
        email -> Varchar,
        role -> Text,
        token_hash -> Bytea,
        invited_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        accepted_at -> Nullable<Timestamptz>,
        accepted_by -> Nullable<Uuid>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    tenant_moves (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        from_server -> Uuid,
        to_server -> Uuid,
        state -> Text,
        started_at -> Timestamptz,
        heartbeat_at -> Timestamptz,
        read_only_at -> Nullable<Timestamptz>,
        switched_at -> Nullable<Timestamptz>,
        drop_source_after -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        verified -> Nullable<Jsonb>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    tenant_sso_configs (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        provider -> Text,
        provider_tenant_id -> Text,
        client_id -> Text,
        client_secret_encrypted -> Nullable<Text>,
        encryption_key_id -> Nullable<Text>,
        redirect_uri -> Nullable<Text>,
        is_enabled -> Bool,
        config_metadata -> Jsonb,
        auto_provisioning -> Bool,
        default_role -> Text,
        sync_attributes_on_login -> Bool,
        allowed_email_domains -> Array<Nullable<Text>>,
        allowed_azure_groups -> Array<Nullable<Text>>,
        group_role_mapping -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    tenants (id) {
        id -> Uuid,
        #[max_length = 255]
        name -> Varchar,
        #[max_length = 63]
        database_name -> Varchar,
        is_active -> Bool,
        status -> Text,
        status_reason -> Nullable<Text>,
        auth_method -> Text,
        sso_domain_whitelist -> Array<Nullable<Text>>,
        sso_auto_provisioning -> Bool,
        sso_default_role -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        created_by -> Nullable<Uuid>,
        sso_directory_id -> Nullable<Text>,
        server_id -> Uuid,
        database_purged_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    user_azure_identities (id) {
        id -> Uuid,
        user_id -> Uuid,
        tenant_id -> Uuid,
        azure_tenant_id -> Text,
        azure_object_id -> Text,
        azure_upn -> Nullable<Text>,
        azure_display_name -> Nullable<Text>,
        access_token_encrypted -> Nullable<Text>,
        refresh_token_encrypted -> Nullable<Text>,
        id_token_encrypted -> Nullable<Text>,
        encryption_key_id -> Nullable<Text>,
        token_expires_at -> Nullable<Timestamptz>,
        needs_reauth -> Bool,
        last_sync -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    user_email_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        purpose -> Text,
        token_hash -> Bytea,
        #[max_length = 255]
        email -> Varchar,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    user_sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        created_at -> Timestamptz,
        last_used_at -> Timestamptz,
        expires_at -> Timestamptz,
        #[max_length = 512]
        user_agent -> Nullable<Varchar>,
        #[max_length = 64]
        client_address -> Nullable<Varchar>,
        amr -> Text,
        sso_tenant_id -> Nullable<Uuid>,
        sso_directory_id -> Nullable<Text>,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    user_tenant_associations (user_id, tenant_id) {
        user_id -> Uuid,
        tenant_id -> Uuid,
        role -> Text,
        joined_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        #[max_length = 255]
        email -> Varchar,
        password_hash -> Nullable<Text>,
        #[max_length = 100]
        first_name -> Varchar,
        #[max_length = 100]
        last_name -> Varchar,
        is_active -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        email_verified_at -> Nullable<Timestamptz>,
        is_platform_admin -> Bool,
        password_proven -> Bool,
        password_changed_at -> Nullable<Timestamptz>,
        tokens_valid_after -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Int8,
        delivery_id -> Uuid,
        attempted_at -> Timestamptz,
        status_code -> Nullable<Int4>,
        error -> Nullable<Text>,
        duration_ms -> Int4,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Uuid,
        endpoint_id -> Uuid,
        event_id -> Uuid,
        event_type -> Text,
        payload -> Jsonb,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        last_status_code -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_endpoints (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        url -> Text,
        event_types -> Array<Nullable<Text>>,
        secret -> Text,
        enabled -> Bool,
        disabled_reason -> Nullable<Text>,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        secret_key_id -> Nullable<Text>,
    }
}

diesel::joinable!(refresh_tokens -> user_sessions (family_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(tenant_invitations -> tenants (tenant_id));
diesel::joinable!(tenant_moves -> tenants (tenant_id));
diesel::joinable!(tenant_sso_configs -> tenants (tenant_id));
diesel::joinable!(tenants -> database_servers (server_id));
diesel::joinable!(tenants -> users (created_by));
diesel::joinable!(user_azure_identities -> tenants (tenant_id));
diesel::joinable!(user_azure_identities -> users (user_id));
diesel::joinable!(user_email_tokens -> users (user_id));
diesel::joinable!(user_sessions -> users (user_id));
diesel::joinable!(user_tenant_associations -> tenants (tenant_id));
diesel::joinable!(user_tenant_associations -> users (user_id));
diesel::joinable!(webhook_attempts -> webhook_deliveries (delivery_id));
diesel::joinable!(webhook_deliveries -> webhook_endpoints (endpoint_id));

diesel::allow_tables_to_appear_in_same_query!(
    audit_logs,
    database_servers,
    notifications,
    outbox,
    processed_events,
    refresh_tokens,
    tenant_invitations,
    tenant_moves,
    tenant_sso_configs,
    tenants,
    user_azure_identities,
    user_email_tokens,
    user_sessions,
    user_tenant_associations,
    users,
    webhook_attempts,
    webhook_deliveries,
    webhook_endpoints,
);
