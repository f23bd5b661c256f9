//! Email notifications: a tenant's creator hears that it is ready, a member hears of
//! being added, of a role change and of removal; a user gets the emails of their
//! account (`user.account`): verification and password-reset links, password changed
//! or removed, signed out or deactivated by an administrator; an invited address gets
//! its invitation to a tenant (`tenant.invitation`). The consumer renders the
//! templates (`templates/`, `{{name}}` placeholders; plain text, and HTML with escaped
//! values for account emails) into `notifications` rows, created with the processed
//! event ids in one transaction; the sender loop delivers them over SMTP (lettre) with
//! retries, marking each sent. A crash between the SMTP server's acceptance and the
//! mark sends that email again: email has no idempotency key.
//!
//! A link with a secret token stays sealed (by the keyring shared with auth and tenant)
//! in its row
//! until the email is sent: the body holds `{{link}}`, filled in at sending, and the
//! sealed link is dropped once the email is accepted. The template says what the link
//! is bound to (an account token or an invitation).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use domain::{TenantId, UserId};
use events::account::{RevokedBy, SealedLink};
use events::{
    AccountEvent, AddedBy, InvitationEvent, MembershipAction, MembershipChanged, TenantCreated,
};
use events::{EventEnvelope, Handler, HandlerError, Shutdown, Topic};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use lettre::message::{Mailbox, MultiPart};
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

/// The plain-text templates, compiled in: the first line is `Subject: …`.
fn template(name: &str) -> Option<&'static str> {
    match name {
        "tenant_created" => Some(include_str!("../templates/tenant_created.txt")),
        "member_added" => Some(include_str!("../templates/member_added.txt")),
        "member_role_changed" => Some(include_str!("../templates/member_role_changed.txt")),
        "member_removed" => Some(include_str!("../templates/member_removed.txt")),
        "verify_email" => Some(include_str!("../templates/verify_email.txt")),
        "reset_password" => Some(include_str!("../templates/reset_password.txt")),
        "password_changed" => Some(include_str!("../templates/password_changed.txt")),
        "password_removed" => Some(include_str!("../templates/password_removed.txt")),
        "sessions_revoked_by_admin" => {
            Some(include_str!("../templates/sessions_revoked_by_admin.txt"))
        }
        "account_deactivated" => Some(include_str!("../templates/account_deactivated.txt")),
        "sso_identity_linked" => Some(include_str!("../templates/sso_identity_linked.txt")),
        "tenant_invitation" => Some(include_str!("../templates/tenant_invitation.txt")),
        _ => None,
    }
}

/// The HTML templates, compiled in (account emails).
fn html_template(name: &str) -> Option<&'static str> {
    match name {
        "verify_email" => Some(include_str!("../templates/verify_email.html")),
        "reset_password" => Some(include_str!("../templates/reset_password.html")),
        "password_changed" => Some(include_str!("../templates/password_changed.html")),
        "password_removed" => Some(include_str!("../templates/password_removed.html")),
        "sessions_revoked_by_admin" => {
            Some(include_str!("../templates/sessions_revoked_by_admin.html"))
        }
        "account_deactivated" => Some(include_str!("../templates/account_deactivated.html")),
        "sso_identity_linked" => Some(include_str!("../templates/sso_identity_linked.html")),
        "tenant_invitation" => Some(include_str!("../templates/tenant_invitation.html")),
        _ => None,
    }
}

/// The placeholder of a sealed link, filled in when the email is sent.
const LINK: &str = "{{link}}";

/// The template whose link is an invitation's (the others' are account tokens').
const INVITATION_TEMPLATE: &str = "tenant_invitation";

/// The associated data a sealed link of template `template` was bound to.
fn link_aad(template: &str, reference: Uuid) -> Vec<u8> {
    if template == INVITATION_TEMPLATE {
        events::invitation::link_aad(reference)
    } else {
        SealedLink::aad(reference)
    }
}

/// A value as a template takes it: no two braces in a row, whatever it holds (a name
/// cannot smuggle a placeholder, such as the secret link's, into the email).
fn inert(value: &str) -> String {
    // A zero-width non-joiner after each brace: invisible, and `{{` cannot form.
    value.replace('{', "{\u{200C}")
}

/// `value` escaped for HTML text and attributes.
fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn fill(template: &str, values: &HashMap<&str, String>, escape: bool) -> String {
    let mut text = template.to_owned();
    for (key, value) in values {
        let value = inert(value);
        let value = if escape { escape_html(&value) } else { value };
        text = text.replace(&format!("{{{{{key}}}}}"), &value);
    }
    text
}

/// (subject, body) of template `name` with `values` filled in.
pub fn render(name: &str, values: &HashMap<&str, String>) -> Option<(String, String)> {
    let text = fill(template(name)?, values, false);
    let (first, body) = text.split_once('\n')?;
    let subject = first.strip_prefix("Subject: ")?.trim().to_owned();
    Some((subject, body.trim_start_matches('\n').to_owned()))
}

/// The HTML body of template `name` (if it has one), values escaped.
pub fn render_html(name: &str, values: &HashMap<&str, String>) -> Option<String> {
    Some(fill(html_template(name)?, values, true))
}

/// "24 hours", "30 minutes", "2 days": how long a link stays valid.
fn human_duration(seconds: i64) -> String {
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    // To the nearest minute: the expiry is set a moment before the event's time.
    let minutes = ((seconds + 30) / 60).max(1);
    match minutes {
        m if m >= 2 * 1440 && m % 1440 == 0 => plural(m / 1440, "day"),
        m if m >= 60 && m % 60 == 0 => plural(m / 60, "hour"),
        m => plural(m, "minute"),
    }
}

/// Renders events into pending notifications.
pub struct Notifications {
    pub db: DbPool,
    pub auth: clients::AuthClient,
    pub tenants: clients::TenantClient,
    pub wake: Arc<Notify>,
}

/// The topics whose events may send emails.
pub fn topics() -> Vec<Topic> {
    vec![
        Topic::TenantCreated,
        Topic::MembershipChanged,
        Topic::UserAccount,
        Topic::TenantInvitation,
    ]
}

struct Planned {
    event_id: Uuid,
    recipient: String,
    template: &'static str,
    subject: String,
    body: String,
    html: Option<String>,
    link: Option<SealedLink>,
}

/// An account email: template, recipient, values and sealed link.
type AccountEmail = (
    &'static str,
    String,
    HashMap<&'static str, String>,
    Option<SealedLink>,
);

/// An event whose data is not what its type says: given up (dead-lettered) at once.
fn invalid(e: events::DecodeError) -> HandlerError {
    HandlerError::Invalid(e.to_string())
}

/// The email a `user.account` event sends, if any.
fn account_email(event: &EventEnvelope) -> Result<Option<AccountEmail>, HandlerError> {
    let account: AccountEvent = event.decode().map_err(invalid)?;
    let valid_for = |expires_at: DateTime<Utc>| {
        human_duration((expires_at - event.occurred_at).num_seconds().max(60))
    };
    let (template, email, mut values, link) = match account {
        AccountEvent::VerificationRequested {
            email,
            first_name,
            link,
            expires_at,
            ..
        } => (
            "verify_email",
            email,
            HashMap::from([
                ("first_name", first_name),
                ("valid_for", valid_for(expires_at)),
            ]),
            Some(link),
        ),
        AccountEvent::PasswordResetRequested {
            email,
            first_name,
            link,
            expires_at,
            ..
        } => (
            "reset_password",
            email,
            HashMap::from([
                ("first_name", first_name),
                ("valid_for", valid_for(expires_at)),
            ]),
            Some(link),
        ),
        AccountEvent::PasswordReset {
            email,
            first_name,
            sessions_revoked,
            ..
        }
        | AccountEvent::PasswordChanged {
            email,
            first_name,
            sessions_revoked,
            ..
        } => (
            "password_changed",
            email,
            HashMap::from([
                ("first_name", first_name),
                ("sessions", sessions_revoked.to_string()),
            ]),
            None,
        ),
        AccountEvent::PasswordRemoved {
            email,
            first_name,
            sessions_revoked,
            ..
        } => (
            "password_removed",
            email,
            HashMap::from([
                ("first_name", first_name),
                ("sessions", sessions_revoked.to_string()),
            ]),
            None,
        ),
        AccountEvent::SessionsRevoked {
            email,
            first_name,
            by: RevokedBy::Admin,
            sessions_revoked,
            ..
        } => (
            "sessions_revoked_by_admin",
            email,
            HashMap::from([
                ("first_name", first_name),
                ("sessions", sessions_revoked.to_string()),
            ]),
            None,
        ),
        AccountEvent::Deactivated {
            email,
            first_name,
            sessions_revoked,
            ..
        } => (
            "account_deactivated",
            email,
            HashMap::from([
                ("first_name", first_name),
                ("sessions", sessions_revoked.to_string()),
            ]),
            None,
        ),
        AccountEvent::SsoIdentityLinked {
            email,
            first_name,
            tenant_name,
            directory_account,
            ..
        } => (
            "sso_identity_linked",
            email,
            HashMap::from([
                ("first_name", first_name),
                ("tenant_name", tenant_name),
                ("directory_account", directory_account),
            ]),
            None,
        ),
        AccountEvent::EmailVerified { .. }
        | AccountEvent::SessionsRevoked { .. }
        | AccountEvent::Reactivated { .. } => return Ok(None),
    };
    values.insert("email", email.clone());
    Ok(Some((template, email, values, link)))
}

/// The email an `invitation.created` event sends to the invited address: to anyone,
/// account or not (that is the point); the other actions send none.
fn invitation_email(event: &EventEnvelope) -> Result<Option<Planned>, HandlerError> {
    let invitation: InvitationEvent = event.decode().map_err(invalid)?;
    let InvitationEvent::Created {
        tenant_name,
        email,
        role,
        invited_by_name,
        link,
        expires_at,
        ..
    } = invitation
    else {
        return Ok(None);
    };
    let values = HashMap::from([
        ("tenant_name", tenant_name),
        ("inviter_name", invited_by_name),
        ("role", role.to_string()),
        ("email", email.clone()),
        (
            "valid_for",
            human_duration((expires_at - event.occurred_at).num_seconds().max(60)),
        ),
    ]);
    let (subject, body) = render(INVITATION_TEMPLATE, &values).ok_or_else(|| {
        HandlerError::Failed(format!("template {INVITATION_TEMPLATE} is malformed"))
    })?;
    Ok(Some(Planned {
        event_id: event.id,
        recipient: email,
        template: INVITATION_TEMPLATE,
        subject,
        body,
        html: render_html(INVITATION_TEMPLATE, &values),
        link: Some(link),
    }))
}

impl Notifications {
    async fn plan(&self, event: &EventEnvelope) -> Result<Option<Planned>, HandlerError> {
        if event.event_type == Topic::TenantInvitation.as_str() {
            return invitation_email(event);
        }
        if event.event_type == Topic::UserAccount.as_str() {
            let Some((template, recipient, values, link)) = account_email(event)? else {
                return Ok(None);
            };
            // Only to a user of this platform whose address is still the one the
            // event names (a link to an address since changed is not sent).
            let user = event.decode::<AccountEvent>().map_err(invalid)?.user_id();
            let known = self
                .auth
                .users(&[user])
                .await
                .map_err(|e| HandlerError::Unavailable(e.to_string()))?
                .into_iter()
                .any(|u| u.email == recipient);
            if !known {
                return Ok(None);
            }
            let (subject, body) = render(template, &values)
                .ok_or_else(|| HandlerError::Failed(format!("template {template} is malformed")))?;
            return Ok(Some(Planned {
                event_id: event.id,
                recipient,
                template,
                subject,
                body,
                html: render_html(template, &values),
                link,
            }));
        }
        let (template, user, role): (&'static str, UserId, Option<String>) =
            match event.event_type.as_str() {
                t if t == Topic::TenantCreated.as_str() => {
                    let created: TenantCreated = event.decode().map_err(invalid)?;
                    let Some(creator) = created.created_by else {
                        return Ok(None);
                    };
                    ("tenant_created", creator, None)
                }
                t if t == Topic::MembershipChanged.as_str() => {
                    let change: MembershipChanged = event.decode().map_err(invalid)?;
                    // Who accepted an invitation knows they joined.
                    if change.added_by == Some(AddedBy::Invitation) {
                        return Ok(None);
                    }
                    let template = match change.action {
                        MembershipAction::Added | MembershipAction::Set => "member_added",
                        MembershipAction::RoleChanged => "member_role_changed",
                        MembershipAction::Removed => "member_removed",
                    };
                    let role = change.role.map(|r| r.as_str().to_owned());
                    (template, change.user_id, role)
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
            html: None,
            link: None,
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
                                notifications::html_body.eq(p.html.as_deref()),
                                notifications::link_ref
                                    .eq(p.link.as_ref().map(|l| l.reference.to_string())),
                                notifications::link_sealed
                                    .eq(p.link.as_ref().map(|l| l.ciphertext.as_str())),
                                notifications::link_key_id
                                    .eq(p.link.as_ref().map(|l| l.key_id.as_str())),
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
    template: String,
    subject: String,
    body: String,
    html_body: Option<String>,
    link_ref: Option<String>,
    link_sealed: Option<String>,
    link_key_id: Option<String>,
    attempts: i32,
}

impl Pending {
    /// The text and HTML bodies, with the sealed link opened and filled in.
    fn bodies(&self, keyring: &secrets::Keyring) -> Result<(String, Option<String>), String> {
        let link = match (&self.link_ref, &self.link_sealed, &self.link_key_id) {
            (Some(reference), Some(sealed), Some(key_id)) => {
                let reference: Uuid = reference
                    .parse()
                    .map_err(|_| "the link's reference is not an id".to_owned())?;
                let opened = keyring
                    .decrypt(key_id, sealed, &link_aad(&self.template, reference))
                    .map_err(|e| format!("the link cannot be opened: {e}"))?;
                Some(String::from_utf8(opened).map_err(|_| "the link is not text".to_owned())?)
            }
            _ => None,
        };
        let Some(link) = link else {
            return Ok((self.body.clone(), self.html_body.clone()));
        };
        Ok((
            self.body.replace(LINK, &link),
            self.html_body
                .as_ref()
                .map(|html| html.replace(LINK, &escape_html(&link))),
        ))
    }
}

/// Sends pending notifications until `shutdown`.
pub async fn send_loop(
    db: DbPool,
    smtp: SmtpSettings,
    keyring: Arc<secrets::Keyring>,
    wake: Arc<Notify>,
    shutdown: Shutdown,
) {
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
            let message = pending.bodies(&keyring).and_then(|(text, html)| {
                let to = pending
                    .recipient
                    .parse::<Mailbox>()
                    .map_err(|e| format!("recipient is not a mailbox: {e}"))?;
                let builder = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(&pending.subject);
                match html {
                    Some(html) => builder.multipart(MultiPart::alternative_plain_html(text, html)),
                    None => builder.body(text),
                }
                .map_err(|e| format!("message: {e}"))
            });
            let result = match message {
                Err(e) => Err(e),
                Ok(message) => transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
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
                    notifications::template,
                    notifications::subject,
                    notifications::body,
                    notifications::html_body,
                    notifications::link_ref,
                    notifications::link_sealed,
                    notifications::link_key_id,
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
                    // The secret link is not kept once it is delivered.
                    notifications::link_sealed.eq(None::<String>),
                    notifications::link_key_id.eq(None::<String>),
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

    #[test]
    fn account_templates_have_text_and_html_and_keep_only_the_link_placeholder() {
        let values = HashMap::from([
            ("first_name", "<b>Ada</b> {{link}} {{{link}}".to_owned()),
            ("email", "ada@example.com".to_owned()),
            ("valid_for", "24 hours".to_owned()),
            ("sessions", "2".to_owned()),
            ("tenant_name", "Acme".to_owned()),
            ("directory_account", "ada@acme.example".to_owned()),
        ]);
        for name in [
            "verify_email",
            "reset_password",
            "password_changed",
            "password_removed",
            "sessions_revoked_by_admin",
            "account_deactivated",
            "sso_identity_linked",
        ] {
            let (subject, body) = render(name, &values).expect(name);
            let html = render_html(name, &values).expect(name);
            assert!(!subject.is_empty() && !subject.contains("{{"), "{name}");
            assert!(body.contains("ada@example.com"), "{name}: {body}");
            assert!(
                html.contains("&lt;b&gt;Ada&lt;/b&gt;"),
                "{name}: values are escaped: {html}"
            );
            assert!(!html.contains("<b>Ada"), "{name}");
            let with_link = matches!(name, "verify_email" | "reset_password");
            for text in [&body, &html] {
                // A name cannot smuggle the placeholder the secret link replaces.
                let links = text.matches(LINK).count();
                assert!(
                    if with_link { links >= 1 } else { links == 0 },
                    "{name}: {text}"
                );
                assert!(
                    text.replace(LINK, "").find("{{").is_none(),
                    "{name}: a placeholder is left: {text}"
                );
            }
        }
    }

    #[test]
    fn sealed_links_are_filled_in_at_sending_and_escaped_in_html() {
        let keyring = secrets::Keyring::parse(secrets::DEVELOPMENT_KEYRING).expect("keyring");
        let reference = Uuid::new_v4();
        let link = "https://app.example.com/verify-email#token=a&b<c>";
        let sealed = keyring
            .encrypt(link.as_bytes(), &SealedLink::aad(reference))
            .expect("sealed");
        let pending = Pending {
            id: Uuid::new_v4(),
            recipient: "ada@example.com".into(),
            template: "verify_email".into(),
            subject: "s".into(),
            body: format!("open {LINK}"),
            html_body: Some(format!("<a href=\"{LINK}\">x</a>")),
            link_ref: Some(reference.to_string()),
            link_sealed: Some(sealed.ciphertext.clone()),
            link_key_id: Some(sealed.key_id.clone()),
            attempts: 0,
        };
        let (text, html) = pending.bodies(&keyring).expect("opened");
        assert_eq!(text, format!("open {link}"));
        assert_eq!(
            html.as_deref(),
            Some("<a href=\"https://app.example.com/verify-email#token=a&amp;b&lt;c&gt;\">x</a>")
        );
        // Bound to its token: under another reference it does not open.
        let moved = Pending {
            link_ref: Some(Uuid::new_v4().to_string()),
            ..pending
        };
        assert!(moved.bodies(&keyring).is_err());
    }

    #[test]
    fn an_invitation_mails_the_invited_address_its_sealed_link() {
        let keyring = secrets::Keyring::parse(secrets::DEVELOPMENT_KEYRING).expect("keyring");
        let id = Uuid::new_v4();
        let url = "https://app.example.com/invitations/accept?token=abc";
        let sealed = keyring
            .encrypt(url.as_bytes(), &events::invitation::link_aad(id))
            .expect("sealed");
        let created = InvitationEvent::Created {
            invitation_id: id,
            tenant_id: TenantId::new(),
            tenant_name: "<Acme>".into(),
            email: "guest@example.com".into(),
            role: domain::Role::Viewer,
            invited_by: UserId::new(),
            invited_by_name: "Grace {{link}} Hopper".into(),
            link: SealedLink {
                reference: id,
                key_id: sealed.key_id.clone(),
                ciphertext: sealed.ciphertext.clone(),
            },
            expires_at: Utc::now() + chrono::Duration::days(7),
            refreshed: false,
        };
        let event = created.envelope(None).expect("event");
        let planned = invitation_email(&event).expect("valid").expect("an email");
        assert_eq!(planned.recipient, "guest@example.com");
        assert_eq!(planned.subject, "You are invited to join <Acme>");
        assert!(
            planned.body.contains("Hopper invites guest@example.com"),
            "{}",
            planned.body
        );
        assert!(planned.body.contains("the role viewer"), "{}", planned.body);
        assert!(
            planned.body.contains("expires in 7 days"),
            "{}",
            planned.body
        );
        let html = planned.html.clone().expect("html");
        assert!(html.contains("&lt;Acme&gt;"), "{html}");
        for text in [&planned.body, &html] {
            assert!(text.contains(LINK), "{text}");
            assert!(text.replace(LINK, "").find("{{").is_none(), "{text}");
        }
        let pending = Pending {
            id: Uuid::new_v4(),
            recipient: planned.recipient,
            template: planned.template.to_owned(),
            subject: planned.subject,
            body: planned.body,
            html_body: planned.html,
            link_ref: Some(id.to_string()),
            link_sealed: Some(sealed.ciphertext),
            link_key_id: Some(sealed.key_id),
            attempts: 0,
        };
        let (text, _) = pending.bodies(&keyring).expect("opened");
        assert!(text.contains(url), "{text}");
        // Bound to an invitation: it does not open as an account token's link.
        let as_account = Pending {
            template: "verify_email".into(),
            ..pending
        };
        assert!(as_account.bodies(&keyring).is_err());

        let revoked = InvitationEvent::Revoked {
            invitation_id: id,
            tenant_id: TenantId::new(),
            email: "guest@example.com".into(),
            role: domain::Role::Viewer,
        };
        let event = revoked.envelope(None).expect("event");
        assert!(invitation_email(&event).expect("valid").is_none());
    }

    #[test]
    fn link_lifetimes_read_naturally() {
        assert_eq!(human_duration(86_400), "24 hours");
        assert_eq!(human_duration(1800), "30 minutes");
        assert_eq!(human_duration(3600), "1 hour");
        assert_eq!(human_duration(7 * 86_400), "7 days");
        assert_eq!(human_duration(90), "2 minutes");
        assert_eq!(human_duration(86_399), "24 hours");
        assert_eq!(human_duration(1799), "30 minutes");
    }
}
