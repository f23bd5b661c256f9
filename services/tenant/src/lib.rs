//! The tenant service: tenants, memberships and provisioning of tenant databases; the
//! public `/api/tenants` routes, the internal API other services use, and the
//! `migrate-tenants` command.

use std::time::Duration;

use http_kit::{Background, ReadinessCheck, Running, ServiceInfo};
use utoipa::OpenApi;

pub mod app;
pub mod commands;
pub mod fleet;
pub mod invitations;
pub mod maintenance;
pub mod migrate_tenants;
pub mod moving;
pub mod placement;
pub mod provisioning;
pub mod routes;
mod settings;
pub mod store;

pub use settings::{Settings, DEFAULT_PORT};

pub const INFO: ServiceInfo = ServiceInfo {
    name: "tenant",
    version: env!("CARGO_PKG_VERSION"),
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tenant",
        description = "Tenants, memberships and tenant databases"
    ),
    paths(
        routes::tenants::list,
        routes::tenants::create,
        routes::tenants::get,
        routes::tenants::update,
        routes::tenants::retry,
        routes::tenants::delete,
        routes::members::add,
        routes::members::change_role,
        routes::members::remove,
        routes::invitations::create,
        routes::invitations::list,
        routes::invitations::revoke,
        routes::invitations::preview,
        routes::invitations::accept,
        routes::internal::tenant,
        routes::internal::tenant_databases,
        routes::internal::tenant_database,
        routes::internal::membership,
        routes::internal::set_membership,
        routes::internal::set_sso,
        routes::internal::sso_bypass,
        routes::internal::tenants_of_user,
    )
)]
struct ApiDoc;

/// This service's OpenAPI document (the server merges in the common endpoints).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    http_kit::openapi::secure(&mut doc, &[("get", "/api/invitations/{token}")]);
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
    let database_checks = main_db::database_checks(
        INFO.name,
        common,
        &db,
        &[
            settings.tenant_db.budget_part(),
            ("TENANT_ADMIN_POOL_SIZE", settings.tenant_db.admin_pool_size),
        ],
    )?;
    let redis = cache::connect(common.redis_url.expose(), common.redis_timeout)?;
    let servers = std::sync::Arc::new(fleet::Fleet::new(db.clone(), settings.tenant_db.clone())?);
    background.spawn(
        "provisioning-sweep",
        maintenance::sweep_loop(
            db.clone(),
            servers.clone(),
            settings.provisioning_stale_after,
            settings.provisioning_sweep_every,
            background.token(),
        ),
    );
    let relay = main_db::start_relay(
        INFO.name,
        common,
        std::sync::Arc::new(main_db::MainOutbox(db.clone())),
        &mut background,
    )?;
    // Interrupted moves rolled back, moved tenants' sources dropped when due.
    let mover = moving::Mover::new(db.clone(), servers.clone(), settings.moves.clone())
        .with_relay(relay.clone());
    background.spawn(
        "move-sweep",
        mover.sweep_loop(
            (settings.moves.stale_after / 2).clamp(Duration::from_secs(1), Duration::from_secs(30)),
            background.token(),
        ),
    );
    let app = app::App {
        relay: relay.clone(),
        db: db.clone(),
        provisioner: provisioning::Provisioner::new(db.clone(), servers.clone()).with_relay(relay),
        servers: servers.clone(),
        auth: clients::AuthClient::from_peers(&settings.peers)?,
        limit_per_user: settings.tenant_limit_per_user,
        role_changes: cache::Broadcast::new(
            &redis,
            &cache::Keys::new(common.redis_key_prefix.clone()),
            http_kit::identity::ROLE_CHANNEL,
        ),
    };
    let invitations = actix_web::web::Data::new(invitations::Invitations {
        keyring: std::sync::Arc::new(secrets::Keyring::parse(settings.secrets_keyring.expose())?),
        public_app_url: settings.public_app_url.clone(),
        settings: settings.invitations,
        limiter: cache::RateLimiter::new(
            redis.clone(),
            cache::Keys::new(common.redis_key_prefix.clone()),
            common.redis_timeout,
        ),
    });
    let verifier = settings.peers.verifier(common, &redis)?;
    // This service owns memberships: no cache, every request sees the current role.
    let roles = http_kit::identity::CachedRoles::new(
        std::sync::Arc::new(app::DbRoles {
            db: db.clone(),
            relay: app.relay.clone(),
        }),
        std::time::Duration::ZERO,
        1,
    );
    let checks = [
        ReadinessCheck::new("redis", cache::probe(redis, common.redis_timeout)),
        // Without the template no tenant can be created: run `tenant migrate-tenants`.
        ReadinessCheck::new("tenant_template", {
            let tenants = servers.main().clone();
            move || {
                let tenants = tenants.clone();
                async move {
                    match tenants.template_exists().await {
                        Ok(true) => Ok(()),
                        Ok(false) => Err(
                            "the tenant template database does not exist (run migrate-tenants)"
                                .to_owned(),
                        ),
                        Err(e) => Err(e.to_string()),
                    }
                }
            }
        }),
    ];
    let db = actix_web::web::Data::new(db);
    let app = actix_web::web::Data::new(app);
    let verifier = actix_web::web::Data::new(verifier);
    let roles = actix_web::web::Data::new(roles);
    let internal = actix_web::web::Data::new(settings.peers.internal_token());
    let server = http_kit::server::start_service(
        INFO,
        common,
        database_checks.into_iter().chain(checks),
        openapi(),
        listeners,
        move |cfg| {
            cfg.app_data(db.clone())
                .app_data(app.clone())
                .app_data(invitations.clone())
                .app_data(verifier.clone())
                .app_data(roles.clone())
                .app_data(internal.clone());
            routes::configure(cfg);
        },
    )?;
    Ok(Running { server, background })
}
