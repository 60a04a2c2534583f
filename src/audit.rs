//! The hub's own admin actions (token minted, export made, ...) recorded as events of the
//! built-in `trailhub` integration, through the same store path as every other event

use crate::auth::Principal;
use crate::schema::{
    Action, Actor, ActorType, Category, Event, IntegrationRef, Outcome, Severity, Target,
};
use crate::store::{prepare, Store, StoreError};
use crate::time::now_micros;

pub fn trailhub_integration() -> IntegrationRef {
    IntegrationRef {
        id: "trailhub".into(),
        name: "trailhub".into(),
        connector: "trailhub".into(),
    }
}

/// One admin action to record.
pub struct AdminAction<'a> {
    pub event_type: &'a str,
    pub action: Action,
    pub category: Category,
    pub target: Option<Target>,
    pub description: String,
    pub details: serde_json::Value,
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    hex::encode(b)
}

/// Appends the audit event durably; the action is not answered before its record is on disk.
pub async fn record(store: &Store, who: &Principal, a: AdminAction<'_>) -> Result<(), StoreError> {
    record_seq(store, who, a).await.map(|_| ())
}

/// `record`, answering the record's sequence number.
pub async fn record_seq(
    store: &Store,
    who: &Principal,
    a: AdminAction<'_>,
) -> Result<u64, StoreError> {
    let actor = Actor {
        id: who.token_id.clone(),
        name: Some(who.name.clone()),
        email: None,
        kind: ActorType::ApiKey,
        ip: None,
        user_agent: None,
        location: None,
    };
    let raw_who = serde_json::json!(who.token_id);
    let event = build(actor, raw_who, random_id(), a, Severity::Low);
    let report = commit(store, vec![event]).await?;
    report
        .last_seq
        .ok_or_else(|| StoreError::Io("the audit record was not stored".into()))
}

/// What the hub does by itself (an alert firing, a notification delivered), as an event of
/// the `trailhub` integration whose actor is the hub's `component`. `source_id` makes the
/// record idempotent: recording the same one again (a replay after a crash) stores it once.
pub fn system_event(
    component: &str,
    source_id: String,
    severity: Severity,
    outcome: Outcome,
    a: AdminAction<'_>,
) -> Event {
    let actor = Actor {
        id: format!("trailhub:{component}"),
        name: Some(component.to_string()),
        email: None,
        kind: ActorType::System,
        ip: None,
        user_agent: None,
        location: None,
    };
    let mut event = build(actor, serde_json::Value::Null, source_id, a, severity);
    event.outcome = outcome;
    event
}

/// Stores the hub's own records together (one durable commit).
pub async fn commit(
    store: &Store,
    events: Vec<Event>,
) -> Result<crate::pipeline::Report, StoreError> {
    let integration = trailhub_integration().id;
    crate::pipeline::Pipeline::new(store, None)
        .commit(
            &integration,
            crate::pipeline::Prepared {
                events: events.iter().map(prepare).collect(),
                rejected: Vec::new(),
                filtered: 0,
            },
            crate::pipeline::Options::recorded(),
        )
        .await
}

fn build(
    actor: Actor,
    token_id: serde_json::Value,
    source_id: String,
    a: AdminAction<'_>,
    severity: Severity,
) -> Event {
    let now = now_micros();
    let raw = serde_json::json!({
        "event_type": a.event_type,
        "token_id": token_id,
        "details": a.details,
    });
    Event {
        id: String::new(),
        time: now,
        ingested_at: now,
        integration: trailhub_integration(),
        source_id,
        event_type: a.event_type.to_string(),
        category: a.category,
        action: a.action,
        outcome: Outcome::Success,
        actor,
        targets: a.target.into_iter().collect(),
        changes: Vec::new(),
        session_id: None,
        description: Some(a.description),
        severity,
        raw: serde_json::value::to_raw_value(&raw).expect("JSON values serialise"),
    }
}

/// Records a minted token (`token.create`), as the API and the local CLI both do.
pub async fn record_token_created(
    store: &Store,
    who: &Principal,
    token: &crate::auth::TokenRecord,
    how: &str,
) -> Result<(), StoreError> {
    record(
        store,
        who,
        AdminAction {
            event_type: "token.create",
            action: crate::schema::Action::Create,
            category: crate::schema::Category::Authorization,
            target: Some(Target {
                kind: "token".into(),
                id: token.id.clone(),
                name: Some(token.name.clone()),
            }),
            description: format!(
                "token {} ({}) minted with role {} ({how})",
                token.id,
                token.name,
                token.role.as_str()
            ),
            details: serde_json::json!({"role": token.role.as_str()}),
        },
    )
    .await
}
