//! `trailhub migrate` and `trailhub tokens`: the data dir's format, and API tokens, through the
//! running hub or on the data dir directly (`migrate` only on a stopped hub's data dir).
//! `trailhub verify` is `verify`.

use std::process::ExitCode;

use clap::Subcommand;

use super::{close, target, RemoteArgs, Target};
use crate::auth::Role;
use crate::config::Settings;
use crate::server;
use crate::time::format_micros;

#[derive(Subcommand, Debug)]
pub(super) enum TokensCommand {
    /// Mint a token; it is printed once
    Create {
        #[arg(long)]
        name: String,
        /// admin, viewer or ingest
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// List tokens (never the tokens themselves)
    List,
}

/// Who acts through a command that opens the data dir directly: the OS user, as far as the
/// environment says.
pub(super) fn local_principal() -> crate::auth::Principal {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown user".into());
    crate::auth::Principal {
        token_id: "local-cli".into(),
        name: format!("local command line ({user})"),
        role: Role::Admin,
    }
}

/// `trailhub migrate`: converts the data dir in place, with a progress line, then opens it once
/// so the index is built before the hub next starts.
pub(super) fn migrate(settings: &Settings) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let path = settings.store_path();
    if !path.exists() {
        anyhow::bail!("no store in {}", settings.data_dir.display());
    }
    let started = std::time::Instant::now();
    let mut last_print = std::time::Instant::now();
    let report =
        crate::store::migrate::migrate(&path, settings.cache_mb * 1024 * 1024, |done, total| {
            if last_print.elapsed().as_millis() >= 200 || done == total {
                last_print = std::time::Instant::now();
                let pct = (done * 100).checked_div(total).unwrap_or(100);
                eprint!("\rmigrating: {done} / {total} events ({pct}%)   ");
                let _ = std::io::stderr().flush();
            }
            true
        })?;
    if !report.needed {
        println!("the data dir is already in the current store format; nothing to do");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!();
    if report.resumed_after > 0 {
        println!("resumed after event {}", report.resumed_after);
    }
    println!(
        "moved {} events into blocks in {:.1} s; building the index",
        report.moved,
        started.elapsed().as_secs_f64()
    );
    let store = server::open_store(settings)?;
    let report = store.verify()?;
    close(store)?;
    if !report.ok {
        println!("verify: FAILED after migration: {:?}", report.first_broken);
        return Ok(ExitCode::from(1));
    }
    println!(
        "done: {} events, chain head {} verified",
        report.events_checked, report.head_hash
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn tokens(
    settings: &Settings,
    command: &TokensCommand,
) -> anyhow::Result<ExitCode> {
    let remote = RemoteArgs {
        hub: None,
        token: None,
    };
    match (command, target(settings, &remote)?) {
        (TokensCommand::Create { name, role }, Target::Remote(client)) => {
            let v = client
                .post_json(
                    "/api/v1/tokens",
                    &serde_json::json!({"name": name, "role": role}),
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        (TokensCommand::Create { name, role }, Target::Local(store)) => {
            let role = Role::parse(role)
                .ok_or_else(|| anyhow::anyhow!("--role: expected admin, viewer or ingest"))?;
            let tokens = crate::auth::Tokens::new(store.tokens_tree().clone(), None);
            let (record, token) = tokens.create(name, role)?;
            // the same audit record as POST /api/v1/tokens: minting is an admin action wherever
            // it happens; the token is not shown before its record is on disk
            let recorded = crate::audit::record_token_created(
                &store,
                &local_principal(),
                &record,
                "minted on the local command line",
            )
            .await;
            if let Err(e) = recorded {
                // the token exists but its minting is unrecorded: take it back
                let _ = tokens.revoke(&record.id);
                close(store)?;
                return Err(anyhow::anyhow!("cannot record the token's creation: {e}"));
            }
            close(store)?;
            println!(
                "{} {} ({}) created {}: {}",
                record.id,
                record.name,
                role.as_str(),
                format_micros(record.created_at),
                token.expose()
            );
        }
        (TokensCommand::List, Target::Remote(client)) => {
            let v = client.get_json("/api/v1/tokens", &[]).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        (TokensCommand::List, Target::Local(store)) => {
            let tokens = crate::auth::Tokens::new(store.tokens_tree().clone(), None);
            let list = tokens.list()?;
            close(store)?;
            for t in list {
                println!(
                    "{}  {:<8} {}  {}",
                    t.id,
                    t.role.as_str(),
                    format_micros(t.created_at),
                    t.name
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
