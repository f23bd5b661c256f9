//! Email notifications: a tenant's creator hears that it is ready, a member hears of
//! being added, of a role change and of removal. The consumer renders the templates
//! (`templates/`, `{{name}}` placeholders) into `notifications` rows, created with the
//! processed event ids in one transaction; the sender loop delivers them over SMTP
//! (lettre) with retries, marking each sent. A crash between the SMTP server's
//! acceptance and the mark sends that email again: email has no idempotency key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use domain::{TenantId, UserId};
use events::{EventEnvelope, Handler, HandlerError, Shutdown, Topic};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use main_db::schema::notifications;
use main_db::DbPool;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::audit::classify;

pub const CONSUMER: &str = "notifications";

/// Attempts of one email before it is marked failed.
const MAX_ATTEMPTS: i32 = 8;

/// Where and as whom emails are sent.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `smtp://host:port` (plain, local relays and tests), `smtp://host?tls=required`
    /// (STARTTLS) or `smtps://user:password@host` (TLS), as lettre reads it.
    pub url: http_kit::Secret<String>,
    pub from: String,
    pub timeout: Duration,
}

/// The templates, compiled in.
fn template(name: &str) -> Option<&'static str> {
    match name {
        "tenant_created" => Some(include_str!("../templates/tenant_created.txt")),
        "member_added" => Some(include_str!("../templates/member_added.txt")),
        "member_role_changed" => Some(include_str!("../templates/member_role_changed.txt")),
        "member_removed" => Some(include_str!("../templates/member_removed.txt")),
        _ => None,
    }
}

/// (subject, body) of template `name` with `values` filled in.
pub fn render(name: &str, values: &HashMap<&str, String>) -> Option<(String, String)> {
    let mut text = template(name)?.to_owned();
    for (key, value) in values {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    let (first, body) = text.split_once('\n')?;
    let subject = first.strip_prefix("Subject: ")?.trim().to_owned();
    Some((subject, body.trim_start_matches('\n').to_owned()))
}

/// Renders events into pending notifications.
pub struct Notifications {
    pub db: DbPool,
    pub auth: clients::AuthClient,
    pub tenants: clients::TenantClient,
    pub wake: Arc<Notify>,
}

struct Planned {
    event_id: Uuid,
    recipient: String,
    template: &'static str,
    subject: String,
    body: String,
}

impl Notifications {
    async fn plan(&self, event: &EventEnvelope) -> Result<Option<Planned>, HandlerError> {
        let (template, user, role): (&'static str, UserId, Option<String>) =
            match event.event_type.as_str() {
                t if t == Topic::TenantCreated.as_str() => {
                    let Some(creator) = event.data["created_by"]
                        .as_str()
                        .and_then(|s| s.parse::<Uuid>().ok())
                    else {
                        return Ok(None);
                    };
                    ("tenant_created", UserId::from_uuid(creator), None)
                }
                t if t == Topic::MembershipChanged.as_str() => {
                    let template = match event.data["action"].as_str() {
                        Some("added" | "set") => "member_added",
                        Some("role_changed") => "member_role_changed",
                        Some("removed") => "member_removed",
                        _ => return Ok(None),
                    };
                    let user = event.data["user_id"]
                        .as_str()
                        .and_then(|s| s.parse::<Uuid>().ok())
                        .ok_or_else(|| {
                            HandlerError::Invalid("membership.changed without user_id".into())
                        })?;
                    let role = event.data["role"].as_str().map(str::to_owned);
                    (template, UserId::from_uuid(user), role)
                }
                _ => return Ok(None),
            };
        let tenant: TenantId = event.tenant_id.ok_or_else(|| {
            HandlerError::Invalid(format!("{} without a tenant", event.event_type))
        })?;
        let unavailable = |e: clients::ClientError| HandlerError::Unavailable(e.to_string());
        let Some(recipient) = self
            .auth
            .users(&[user])
            .await
            .map_err(unavailable)?
            .into_iter()
            .find(|u| u.is_active)
        else {
            return Ok(None);
        };
        let tenant_name = match self.tenants.tenant(tenant).await.map_err(unavailable)? {
            Some(t) => t.name,
            None => return Ok(None),
        };
        let values = HashMap::from([
            ("first_name", recipient.first_name.clone()),
            ("tenant_name", tenant_name),
            ("role", role.unwrap_or_default()),
        ]);
        let (subject, body) = render(template, &values)
            .ok_or_else(|| HandlerError::Failed(format!("template {template} is malformed")))?;
        Ok(Some(Planned {
            event_id: event.id,
            recipient: recipient.email,
            template,
            subject,
            body,
        }))
    }
}

impl Handler for Notifications {
    fn name(&self) -> &str {
        CONSUMER
    }

    fn handle<'a>(
        &'a self,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            let mut planned = Vec::new();
            for event in events {
                if let Some(p) = self.plan(event).await? {
                    planned.push(p);
                }
            }
            let mut conn = crate::audit::connection(&self.db).await?;
            let created = conn
                .transaction::<_, diesel::result::Error, _>(async |tx| {
                    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
                    let fresh = events::claim(tx, CONSUMER, &ids).await?;
                    let rows: Vec<_> = planned
                        .iter()
                        .filter(|p| fresh.contains(&p.event_id))
                        .map(|p| {
                            (
                                notifications::id.eq(Uuid::new_v4()),
                                notifications::event_id.eq(p.event_id),
                                notifications::recipient.eq(&p.recipient),
                                notifications::template.eq(p.template),
                                notifications::subject.eq(&p.subject),
                                notifications::body.eq(&p.body),
                            )
                        })
                        .collect();
                    if rows.is_empty() {
                        return Ok(0);
                    }
                    diesel::insert_into(notifications::table)
                        .values(&rows)
                        .on_conflict_do_nothing()
                        .execute(tx)
                        .await
                })
                .await
                .map_err(classify)?;
            if created > 0 {
                self.wake.notify_one();
            }
            Ok(())
        }
        .boxed()
    }
}

#[derive(Queryable)]
struct Pending {
    id: Uuid,
    recipient: String,
    subject: String,
    body: String,
    attempts: i32,
}

/// Sends pending notifications until `shutdown`.
pub async fn send_loop(db: DbPool, smtp: SmtpSettings, wake: Arc<Notify>, shutdown: Shutdown) {
    let transport = match AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp.url.expose()) {
        Ok(builder) => builder.timeout(Some(smtp.timeout)).build(),
        Err(e) => {
            tracing::error!(error = %e, "SMTP_URL is not usable; no email is sent");
            return;
        }
    };
    let from: Mailbox = match smtp.from.parse() {
        Ok(from) => from,
        Err(e) => {
            tracing::error!(error = %e, "SMTP_FROM is not a mailbox; no email is sent");
            return;
        }
    };
    let mut stop = shutdown.subscribe();
    loop {
        if *stop.borrow() {
            return;
        }
        let due = match take_due(&db).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "notification sender cannot read notifications");
                Vec::new()
            }
        };
        if due.is_empty() {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            continue;
        }
        for pending in due {
            let result = match pending.recipient.parse::<Mailbox>() {
                Err(e) => Err(format!("recipient is not a mailbox: {e}")),
                Ok(to) => match Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(&pending.subject)
                    .body(pending.body.clone())
                {
                    Err(e) => Err(format!("message: {e}")),
                    Ok(message) => transport
                        .send(message)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                },
            };
            if let Err(e) = record(&db, &pending, result).await {
                tracing::warn!(notification = %pending.id, error = %e, "notification state not recorded");
            }
        }
    }
}

async fn take_due(db: &DbPool) -> anyhow::Result<Vec<Pending>> {
    let mut conn = db.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(conn
        .transaction::<_, diesel::result::Error, _>(async |tx| {
            let due: Vec<Pending> = notifications::table
                .filter(notifications::status.eq("pending"))
                .filter(notifications::next_attempt_at.le(diesel::dsl::now))
                .order(notifications::next_attempt_at.asc())
                .select((
                    notifications::id,
                    notifications::recipient,
                    notifications::subject,
                    notifications::body,
                    notifications::attempts,
                ))
                .limit(20)
                .for_update()
                .skip_locked()
                .load(tx)
                .await?;
            // Leased for a minute: another sender skips them meanwhile.
            let ids: Vec<Uuid> = due.iter().map(|p| p.id).collect();
            diesel::update(notifications::table.filter(notifications::id.eq_any(&ids)))
                .set(notifications::next_attempt_at.eq(Utc::now() + chrono::Duration::minutes(1)))
                .execute(tx)
                .await?;
            Ok(due)
        })
        .await?)
}

async fn record(db: &DbPool, pending: &Pending, result: Result<(), String>) -> anyhow::Result<()> {
    let mut conn = db.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let attempts = pending.attempts + 1;
    let target = notifications::table.find(pending.id);
    match result {
        Ok(()) => {
            diesel::update(target)
                .set((
                    notifications::status.eq("sent"),
                    notifications::attempts.eq(attempts),
                    notifications::sent_at.eq(Some(Utc::now())),
                    notifications::last_error.eq(None::<String>),
                ))
                .execute(&mut conn)
                .await?;
            tracing::info!(notification = %pending.id, "notification sent");
        }
        Err(error) => {
            let status = if attempts >= MAX_ATTEMPTS {
                "failed"
            } else {
                "pending"
            };
            let delay = chrono::Duration::seconds(5i64 << attempts.clamp(0, 10));
            let next: DateTime<Utc> = Utc::now() + delay;
            diesel::update(target)
                .set((
                    notifications::status.eq(status),
                    notifications::attempts.eq(attempts),
                    notifications::next_attempt_at.eq(next),
                    notifications::last_error.eq(Some(error.chars().take(500).collect::<String>())),
                ))
                .execute(&mut conn)
                .await?;
            tracing::warn!(notification = %pending.id, attempts, %error, status, "notification not sent");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_with_a_subject_and_no_placeholder_left() {
        let values = HashMap::from([
            ("first_name", "Ada".to_owned()),
            ("tenant_name", "Acme".to_owned()),
            ("role", "viewer".to_owned()),
        ]);
        for name in [
            "tenant_created",
            "member_added",
            "member_role_changed",
            "member_removed",
        ] {
            let (subject, body) = render(name, &values).expect(name);
            assert!(subject.contains("Acme"), "{name}: {subject}");
            assert!(body.starts_with("Hello Ada,"), "{name}: {body}");
            assert!(!subject.contains("{{") && !body.contains("{{"), "{name}");
        }
        assert!(render("member_added", &values)
            .expect("added")
            .1
            .contains("viewer"));
        assert!(render("nope", &values).is_none());
    }
}
