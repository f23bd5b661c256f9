//! Housekeeping the tenant service runs by itself: a tenant left in `provisioning` by a
//! process that stopped mid-way (crash, deploy) becomes `failed` with a reason, and the
//! half-made database is dropped, so `retry` can complete it and nothing half-made
//! lingers. Runs at start and then every `PROVISIONING_SWEEP_SECS`.

use std::sync::Arc;
use std::time::Duration;

use http_kit::lifecycle::CancellationToken;
use main_db::DbPool;

use crate::fleet::Fleet;

pub const INTERRUPTED: &str =
    "provisioning was interrupted (the process stopped mid-way); retry to complete it";

/// Marks tenants provisioning for longer than `stale_after` as failed; returns how many.
pub async fn sweep_interrupted(
    db: &DbPool,
    servers: &Fleet,
    stale_after: Duration,
) -> anyhow::Result<usize> {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(stale_after)?;
    let mut conn = db.get().await?;
    let stale = crate::store::tenants::stale_provisioning(&mut conn, cutoff).await?;
    let mut swept = 0;
    for tenant in stale {
        if !crate::store::tenants::fail_if_provisioning(&mut conn, tenant.tenant_id(), INTERRUPTED)
            .await?
        {
            // Finished (or failed) in the meantime.
            continue;
        }
        swept += 1;
        tracing::warn!(tenant.id = %tenant.id, "interrupted provisioning marked failed");
        if let Ok(database) = tenant.database() {
            let dropped = match servers.of_tenant(&tenant).await {
                Ok(manager) => manager.drop_database(&database).await,
                Err(e) => Err(e),
            };
            if let Err(e) = dropped {
                tracing::error!(tenant.id = %tenant.id, error = %e, "could not drop the half-made database");
            }
        }
    }
    Ok(swept)
}

/// Sweeps now and every `every` until `stop` is cancelled (a sweep under way is
/// finished first: it never leaves a tenant half-marked).
pub async fn sweep_loop(
    db: DbPool,
    servers: Arc<Fleet>,
    stale_after: Duration,
    every: Duration,
    stop: CancellationToken,
) {
    http_kit::lifecycle::every(every, stop, || async {
        if let Err(e) = sweep_interrupted(&db, &servers, stale_after).await {
            tracing::warn!(error = format!("{e:#}"), "provisioning sweep failed");
        }
    })
    .await;
}
