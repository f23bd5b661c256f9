//! The document service: documents and files of a tenant, stored on S3: upload
//! (streamed, hashed, deduplicated per tenant), list, read, delete, download.
//! Settings: `settings.rs`.

use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::web;
use http_kit::identity::{CachedRoles, JwksClient, TokenVerifier, VerifierSettings};
use http_kit::{CommonSettings, ConfigReader, ReadinessCheck, ServiceInfo};
use utoipa::OpenApi;

pub mod app;
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
        routes::documents::download,
        routes::documents::update,
        routes::documents::download_url,
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

/// The service as its binary and the tests run it.
pub struct Service;

impl http_kit::cli::Service for Service {
    const INFO: ServiceInfo = INFO;
    type Settings = Settings;

    fn read_settings(reader: &mut ConfigReader<'_>) -> Settings {
        Settings::read(reader)
    }

    fn common(settings: &Settings) -> &CommonSettings {
        &settings.common
    }

    fn start(settings: Settings, listeners: http_kit::server::Listeners) -> anyhow::Result<Server> {
        let common = &settings.common;
        let db = main_db::build_pool(
            common.database_url.expose(),
            &main_db::PoolSettings {
                max_size: common.database_pool_size,
                timeout: common.database_timeout,
            },
        )?;
        // The postgres and kafka_topics checks, and the connection-budget warning.
        let database_checks =
            main_db::database_checks(INFO.name, common, &db, &[settings.tenant_db.budget_part()])?;
        let redis = cache::connect(common.redis_url.expose(), common.redis_timeout)?;
        let storage = storage::Storage::new(settings.storage.clone())?;
        let tenants = clients::TenantClient::new(
            settings.tenant_service_url.clone(),
            settings.internal_token.clone(),
            settings.service_call_timeout,
        )?;
        let keys = JwksClient::new(
            format!("{}/.well-known/jwks.json", settings.auth_service_url),
            settings.service_call_timeout,
            std::time::Duration::from_secs(5),
        )?
        .refreshing_every(settings.common.jwks_refresh);
        let verifier = TokenVerifier::new(
            Arc::new(keys),
            cache::Revocations::new(
                redis.clone(),
                cache::Keys::new(common.redis_key_prefix.clone()),
                common.redis_timeout,
            ),
            &VerifierSettings {
                issuer: settings.jwt_issuer.clone(),
                audience: settings.jwt_audience.clone(),
                leeway_secs: 30,
            },
        );
        let roles = Arc::new(CachedRoles::new(
            Arc::new(tenants.clone()),
            std::time::Duration::from_secs(30),
            10_000,
        ));
        roles.follow(cache::Broadcast::new(
            &redis,
            &cache::Keys::new(common.redis_key_prefix.clone()),
            http_kit::identity::ROLE_CHANNEL,
        ));
        let pools = tenant_db::TenantPoolCache::new(settings.tenant_db.clone());
        let list_client = tenants.clone();
        let relay = events::start_relay(
            common.kafka().map(events::Connection::from),
            INFO.name,
            common.kafka_timeout,
            common.outbox_sweep_every,
            Arc::new(tenant_db::TenantOutboxes::new(
                pools.clone(),
                Arc::new(move || {
                    let client = list_client.clone();
                    Box::pin(async move {
                        Ok(client
                            .databases()
                            .await?
                            .into_iter()
                            .map(|d| d.database_name)
                            .collect())
                    })
                }),
            )),
        )?;
        let app = app::DocApp::new(
            storage.clone(),
            pools,
            tenants,
            upload::Uploads::new(settings.uploads.clone()),
            relay,
        );
        let app = web::Data::new(app);
        // The bucket is checked (or created, with S3_CREATE_BUCKET) in the background:
        // until then, and whenever S3 cannot answer, /ready says so.
        let create = settings.create_bucket;
        let bucket_storage = storage.clone();
        tokio::spawn(async move {
            if let Err(e) = bucket_storage.ensure_bucket(create).await {
                tracing::error!(error = %e, "the document bucket is not usable");
            }
        });
        // Multipart uploads a killed instance left behind are aborted by the sweep.
        let sweep_app = app.clone();
        tokio::spawn(async move {
            let every = sweep_app.uploads.settings.sweep_every;
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match upload::sweep_stale(&sweep_app).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(aborted = n, "upload sweep cleaned stale uploads"),
                    Err(e) => tracing::warn!(error = %e, "upload sweep failed"),
                }
            }
        });
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
        http_kit::server::start_service(
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
        )
    }
}
