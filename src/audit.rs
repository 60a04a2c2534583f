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
    record_outcome(store, who, a, Outcome::Success).await
}

/// `record_seq` of something the hub did that may have failed (a notification delivery
/// attempt): the event's `outcome` says how it went.
pub async fn record_outcome(
    store: &Store,
    who: &Principal,
    a: AdminAction<'_>,
    outcome: Outcome,
) -> Result<u64, StoreError> {
    let now = now_micros();
    let source_id = random_id();
    let raw = serde_json::json!({
        "event_type": a.event_type,
        "token_id": who.token_id,
        "details": a.details,
    });
    let event = Event {
        id: String::new(),
        time: now,
        ingested_at: now,
        integration: trailhub_integration(),
        source_id,
        event_type: a.event_type.to_string(),
        category: a.category,
        action: a.action,
        outcome,
        actor: Actor {
            id: who.token_id.clone(),
            name: Some(who.name.clone()),
            email: None,
            kind: ActorType::ApiKey,
            ip: None,
            user_agent: None,
            location: None,
        },
        targets: a.target.into_iter().collect(),
        changes: Vec::new(),
        session_id: None,
        description: Some(a.description),
        severity: Severity::Low,
        raw: serde_json::value::to_raw_value(&raw).expect("JSON values serialise"),
    };
    let integration = event.integration.id.clone();
    let report = crate::pipeline::Pipeline::new(store, None)
        .commit(
            &integration,
            crate::pipeline::Prepared {
                events: vec![prepare(&event)],
                rejected: Vec::new(),
            },
            crate::pipeline::Options::recorded(),
        )
        .await?;
    report
        .last_seq
        .ok_or_else(|| StoreError::Io("the audit record was not stored".into()))
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
