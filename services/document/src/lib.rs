//! The document service: documents and files of a tenant, stored on S3: upload
//! (streamed, hashed, deduplicated per tenant), list, read, delete, download.
//! Settings: `settings.rs`.

use std::sync::Arc;

use actix_web::web;
use http_kit::{Background, ReadinessCheck, Running, ServiceInfo};
use utoipa::OpenApi;

pub mod app;
mod form;
pub mod recording;
pub mod routes;
pub mod serving;
mod settings;
pub mod upload;

pub use settings::{Settings, DEFAULT_PORT};

pub const INFO: ServiceInfo = ServiceInfo {
    name: "document",
    version: env!("CARGO_PKG_VERSION"),
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "document",
        description = "Documents and files of a tenant: upload, list, download, presigned URLs"
    ),
    paths(
        routes::documents::upload,
        routes::documents::list,
        routes::documents::get,
        routes::documents::delete,
        routes::downloads::download,
        routes::documents::update,
        routes::downloads::download_url,
        routes::files::list,
        routes::files::get,
        routes::files::delete,
    )
)]
struct ApiDoc;

/// This service's OpenAPI document (the server merges in the common endpoints).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    http_kit::openapi::secure(&mut doc, &[]);
    http_kit::openapi::describe(&mut doc, &[]);
    doc
}

http_kit::service!(INFO, Settings, start);

/// Builds the service on `listeners` (tests and the all-in-one runner call this).
/// Must be called inside a Tokio runtime.
pub fn start(
    settings: Settings,
    listeners: http_kit::server::Listeners,
) -> anyhow::Result<Running> {
    let common = &settings.common;
    let mut background = Background::new();
    let db = main_db::service_pool(INFO.name, common)?;
    // The postgres and kafka_topics checks, and the connection-budget warning.
    let database_checks =
        main_db::database_checks(INFO.name, common, &db, &[settings.tenant_db.budget_part()])?;
    let redis = cache::connect(common.redis_url.expose(), common.redis_timeout)?;
    let storage = storage::Storage::new(settings.storage.clone())?;
    let peers = &settings.peers;
    let tenants = clients::TenantClient::from_peers(peers)?;
    let verifier = peers.verifier(common, &redis)?;
    let roles =
        http_kit::peers::cached_roles(Arc::new(tenants.clone()), common, &redis, &mut background);
    let pools = tenant_db::TenantPoolCache::new(settings.tenant_db.clone());
    let servers = Arc::new(tenant_db::ServerUrls::new(&settings.tenant_db));
    let (list_client, list_pools, list_servers) = (tenants.clone(), pools.clone(), servers.clone());
    let relay = main_db::start_relay(
        INFO.name,
        common,
        Arc::new(tenant_db::TenantOutboxes::new(
            pools.clone(),
            Arc::new(move || {
                let (client, pools, servers) = (
                    list_client.clone(),
                    list_pools.clone(),
                    list_servers.clone(),
                );
                Box::pin(async move {
                    Ok(app::placed_databases(&client, &pools, &servers)
                        .await?
                        .into_iter()
                        .map(|d| d.as_str().to_owned())
                        .collect())
                })
            }),
        )),
        &mut background,
    )?;
    let app = app::App::new(
        storage.clone(),
        pools,
        servers,
        tenants,
        upload::Uploads::new(settings.uploads.clone()),
        relay,
    );
    let app = web::Data::new(app);
    background.adopt_cancellable(
        "tenant-moves",
        tokio::spawn(app::App::follow_moves(
            Arc::downgrade(&app.clone().into_inner()),
            cache::Broadcast::new(
                &redis,
                &cache::Keys::new(common.redis_key_prefix.clone()),
                clients::tenant::TENANT_MOVED_CHANNEL,
            ),
        )),
    );
    // The bucket is checked (or created, with S3_CREATE_BUCKET) in the background:
    // until then, and whenever S3 cannot answer, /ready says so.
    let create = settings.create_bucket;
    let bucket_storage = storage.clone();
    background.spawn_cancellable("bucket-check", async move {
        if let Err(e) = bucket_storage.ensure_bucket(create).await {
            tracing::error!(error = %e, "the document bucket is not usable");
        }
    });
    // Multipart uploads a killed instance left behind are aborted by the sweep.
    background.spawn(
        "upload-sweep",
        upload::sweep_loop(app.clone(), background.token()),
    );
    let checks = [
        ReadinessCheck::new("redis", cache::probe(redis, common.redis_timeout)),
        ReadinessCheck::new("object_storage", move || {
            let storage = storage.clone();
            async move {
                storage
                    .ensure_bucket(false)
                    .await
                    .map_err(|e| e.to_string())
            }
        }),
    ];
    let verifier = web::Data::new(verifier);
    let roles = web::Data::from(roles);
    let server = http_kit::server::start_service(
        INFO,
        common,
        database_checks.into_iter().chain(checks),
        openapi(),
        listeners,
        move |cfg| {
            cfg.app_data(app.clone())
                .app_data(verifier.clone())
                .app_data(roles.clone());
            routes::configure(cfg);
        },
    )?;
    Ok(Running { server, background })
}
