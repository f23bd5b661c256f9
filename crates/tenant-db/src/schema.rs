// @generated automatically by Diesel CLI.

diesel::table! {
    documents (id) {
        id -> Uuid,
        #[max_length = 255]
        filename -> Varchar,
        #[max_length = 255]
        mime_type -> Varchar,
        file_id -> Uuid,
        user_id -> Uuid,
        created_by -> Uuid,
        processing_status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    files (id) {
        id -> Uuid,
        #[max_length = 32]
        md5_hash -> Bpchar,
        #[max_length = 64]
        sha256_hash -> Bpchar,
        s3_path -> Text,
        file_size -> Int8,
        created_at -> Timestamptz,
        processing_status -> Text,
        detected_mime_type -> Nullable<Text>,
        processed_at -> Nullable<Timestamptz>,
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
    pending_uploads (s3_key) {
        s3_key -> Text,
        upload_id -> Text,
        started_at -> Timestamptz,
    }
}

diesel::table! {
    processed_events (consumer, event_id) {
        consumer -> Text,
        event_id -> Uuid,
        processed_at -> Timestamptz,
    }
}

diesel::joinable!(documents -> files (file_id));

diesel::allow_tables_to_appear_in_same_query!(
    documents,
    files,
    outbox,
    pending_uploads,
    processed_events,
);
