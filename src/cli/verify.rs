//! `trailhub verify`: the log's integrity — the hash chain, the Merkle tree rebuilt from the
//! event bytes, the checkpoints the hub signed — and, with `--against`, that the log is an
//! append-only extension of checkpoints kept elsewhere (a WORM share, an auditor's copy), which
//! is what catches someone who rewrote the data dir, chain and all.
//!
//! On a stopped hub's data dir the whole log is walked here. Through a running hub (`--hub`, or
//! the data dir is held) the hub walks it, and each `--against` checkpoint is checked with a
//! consistency proof to the hub's latest checkpoint, verified here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{close, target, RemoteArgs, Target};
use crate::checkpoints::keyring::Keyring;
use crate::checkpoints::History;
use crate::config::Settings;
use crate::evidence::bundle::verify_bundle;
use crate::evidence::checkpoint::Checkpoint;
use crate::evidence::merkle::{verify_consistency, Hash};
use crate::evidence::note::{NoteSigner, NoteVerifier};
use crate::store::verify::{TreeClaim, VerifyReport};
use crate::store::Store;

#[derive(Args, Debug)]
pub(super) struct VerifyArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    /// A signed checkpoint kept outside the hub (as served by /api/v1/checkpoints/latest); the
    /// log must extend it. May be given more than once.
    #[arg(long, value_name = "CHECKPOINT_FILE")]
    against: Vec<PathBuf>,
    /// The hub's public key (the `public_key` of /api/v1/checkpoints, a C2SP verifier key), or
    /// a file holding it [default: derived from the hub's signing key file]
    #[arg(long, value_name = "VKEY_OR_FILE")]
    key: Option<String>,
    /// Check an evidence bundle (an export with `proofs=true`) offline instead of the log:
    /// every event against the bundle's checkpoint, signed by --key. Needs nothing of the hub.
    #[arg(long, value_name = "BUNDLE_FILE", conflicts_with_all = ["against", "hub"])]
    export: Option<PathBuf>,
}

/// Largest checkpoint file read.
const MAX_CHECKPOINT_FILE: u64 = 64 * 1024;

fn read_small(path: &std::path::Path, max: u64, what: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        anyhow::bail!("{what} {} is larger than {max} bytes", path.display());
    }
    Ok(bytes)
}

/// The key checkpoints must be signed with: `--key`, else the public half of the hub's
/// signing key file.
fn verifier(settings: &Settings, key: Option<&str>) -> anyhow::Result<NoteVerifier> {
    if let Some(key) = key {
        let path = std::path::Path::new(key);
        let text = if path.is_file() {
            String::from_utf8(read_small(path, 4096, "key file")?)?
        } else {
            key.to_string()
        };
        return NoteVerifier::from_vkey(text.trim())
            .map_err(|e| anyhow::anyhow!("--key is not a verifier key: {e}"));
    }
    let path = settings.signing_key_path();
    let text = read_small(&path, 4096, "signing key file").map_err(|e| {
        anyhow::anyhow!(
            "{e}; pass the hub's public key with --key (the public_key of /api/v1/checkpoints)"
        )
    })?;
    let signer = NoteSigner::from_skey(String::from_utf8_lossy(&text).trim()).map_err(|e| {
        anyhow::anyhow!(
            "the signing key file {} does not parse: {e}",
            path.display()
        )
    })?;
    Ok(signer.verifier())
}

/// The keys a checkpoint may be signed with, for someone holding `held`: `held`, and every key
/// the log's key history ties to it by signed hand-overs (`trailhub keys rotate-signing`).
fn trusted(keyring: &Keyring, held: &NoteVerifier) -> anyhow::Result<Vec<NoteVerifier>> {
    if keyring.is_empty() {
        return Ok(vec![held.clone()]);
    }
    keyring
        .trusted_from(held)
        .map_err(|e| anyhow::anyhow!("the key given is not one of the log's signing keys: {e}"))
}

/// Each `--against` file, its signature checked by one of `trusted` (the first is the key held).
fn outside_checkpoints(
    files: &[PathBuf],
    trusted: &[NoteVerifier],
) -> anyhow::Result<Vec<(String, Checkpoint)>> {
    let Some(held) = trusted.first() else {
        return Ok(Vec::new());
    };
    files
        .iter()
        .map(|path| {
            let bytes = read_small(path, MAX_CHECKPOINT_FILE, "checkpoint file")?;
            let checkpoint = Checkpoint::open(&bytes, held.name(), trusted).map_err(|e| {
                anyhow::anyhow!(
                    "the checkpoint in {} is not one signed by the key {}: {e}",
                    path.display(),
                    held.vkey()
                )
            })?;
            Ok((path.display().to_string(), checkpoint))
        })
        .collect()
}

pub(super) async fn verify(settings: &Settings, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(bundle) = &args.export {
        return verify_export(settings, bundle, args.key.as_deref());
    }
    match target(settings, &args.remote)? {
        Target::Local(store) => {
            // the store is closed whatever the walk found
            let result = verify_local(settings, args, &store);
            close(store)?;
            result
        }
        Target::Remote(client) => {
            let report: VerifyReportJson =
                serde_json::from_value(client.get_json("/api/v1/integrity", &[]).await?)?;
            let mut failed = !report.ok;
            print_remote(&report);
            if !args.against.is_empty() {
                let listing = client.get_json("/api/v1/checkpoints", &[]).await?;
                let verifier = match args.key.as_deref() {
                    Some(k) => verifier(settings, Some(k))?,
                    None => {
                        let vkey = listing["public_key"].as_str().unwrap_or_default();
                        eprintln!("note: using the public key the hub serves ({vkey}); pass --key to check against one you hold");
                        NoteVerifier::from_vkey(vkey)
                            .map_err(|e| anyhow::anyhow!("the hub serves a bad public key: {e}"))?
                    }
                };
                let keyring = Keyring::from_listing(&listing["keys"])
                    .map_err(|e| anyhow::anyhow!("the hub's key history: {e}"))?;
                let trusted = trusted(&keyring, &verifier)?;
                for (source, held) in outside_checkpoints(&args.against, &trusted)? {
                    match extends(&client, &trusted, &held).await {
                        Ok(to) => println!(
                            "ok: the log extends the checkpoint in {source} (size {} → {to})",
                            held.size()
                        ),
                        Err(e) => {
                            failed = true;
                            println!(
                                "BROKEN: the log does not extend the checkpoint in {source}: {e}"
                            );
                        }
                    }
                }
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// `verify --export`: an evidence bundle against the key, offline.
fn verify_export(
    settings: &Settings,
    bundle: &std::path::Path,
    key: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let verifier = verifier(settings, key)?;
    let file = std::fs::File::open(bundle)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", bundle.display()))?;
    match verify_bundle(std::io::BufReader::new(file), &verifier) {
        Ok(report) => {
            println!(
                "ok: {} events of {} verified against its signed checkpoint of {} events",
                report.events, report.origin, report.tree_size
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("BROKEN: {}: {e}", bundle.display());
            Ok(ExitCode::from(1))
        }
    }
}

/// `verify` on a stopped hub's data dir: the whole walk, with the stored checkpoints (each
/// checked with the key in force at its size) and the `--against` files as claims.
fn verify_local(settings: &Settings, args: &VerifyArgs, store: &Store) -> anyhow::Result<ExitCode> {
    let needs_key = !args.against.is_empty() || args.key.is_some();
    let verifier = match verifier(settings, args.key.as_deref()) {
        Ok(v) => Some(v),
        Err(e) if needs_key => return Err(e),
        // no key yet (a data dir the hub never signed for): the chain and tree still count
        Err(_) => None,
    };
    let keyring = Keyring::load(store.settings_tree())
        .map_err(|e| anyhow::anyhow!("the log's key history: {e}"))?;
    let mut claims: Vec<TreeClaim> = Vec::new();
    let mut unsigned = Vec::new();
    if let Some(v) = &verifier {
        let outside = outside_checkpoints(&args.against, &trusted(&keyring, v)?)?;
        claims.extend(outside.iter().map(|(source, c)| TreeClaim {
            size: c.size(),
            root: *c.root(),
            source: format!("the checkpoint in {source}"),
        }));
        let (stored, bad) =
            History::new(store.checkpoints_tree().clone()).claims_for(&keyring, v)?;
        claims.extend(stored);
        unsigned = bad;
    }
    let report = store.verify_against(&claims)?;
    if !unsigned.is_empty() {
        println!(
            "WARNING: {} stored checkpoint(s) are not signed by the key {} (sizes {:?}); they were not used",
            unsigned.len(),
            verifier.as_ref().map(|v| v.vkey()).unwrap_or_default(),
            unsigned
        );
    }
    Ok(print_report(&report, !unsigned.is_empty()))
}

/// Checks through a running hub that its latest checkpoint extends `held`; the size it reached.
async fn extends(
    client: &super::remote::Client,
    trusted: &[NoteVerifier],
    held: &Checkpoint,
) -> anyhow::Result<u64> {
    let answer = client
        .get_json(
            "/api/v1/checkpoints/consistency",
            &[("from".into(), held.size().to_string())],
        )
        .await?;
    let note = answer["to_checkpoint"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("the hub sent no checkpoint to prove consistency with"))?;
    let latest = Checkpoint::open(note.as_bytes(), held.origin(), trusted)
        .map_err(|e| anyhow::anyhow!("the hub's latest checkpoint does not verify: {e}"))?;
    let proof: Vec<Hash> = answer["proof"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("the hub sent no proof"))?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| Hash::try_from(b.as_slice()).ok())
                .ok_or_else(|| anyhow::anyhow!("a proof hash is not 32 bytes of hex"))
        })
        .collect::<anyhow::Result<_>>()?;
    verify_consistency(
        held.size(),
        held.root(),
        latest.size(),
        latest.root(),
        &proof,
    )
    .map_err(|e| anyhow::anyhow!("the consistency proof to size {} fails: {e}", latest.size()))?;
    Ok(latest.size())
}

#[derive(serde::Deserialize)]
struct VerifyReportJson {
    ok: bool,
    events_checked: u64,
    head_hash: String,
    #[serde(default)]
    tree_root: String,
    #[serde(default)]
    checkpoints_checked: u64,
    first_broken: Option<serde_json::Value>,
}

fn print_remote(r: &VerifyReportJson) {
    if r.ok {
        println!(
            "ok: {} events verified, chain head {}, Merkle root {}, {} signed checkpoint(s) matched",
            r.events_checked, r.head_hash, r.tree_root, r.checkpoints_checked
        );
    } else {
        let b = r.first_broken.clone().unwrap_or_default();
        println!(
            "BROKEN at event {} (seq {}): {}",
            b["id"].as_str().unwrap_or("?"),
            b["seq"],
            b["reason"].as_str().unwrap_or("")
        );
        println!("{} events before it verified", r.events_checked);
    }
}

fn print_report(report: &VerifyReport, warned: bool) -> ExitCode {
    let json = VerifyReportJson {
        ok: report.ok,
        events_checked: report.events_checked,
        head_hash: report.head_hash.clone(),
        tree_root: report.tree_root.clone(),
        checkpoints_checked: report.checkpoints_checked,
        first_broken: report
            .first_broken
            .as_ref()
            .and_then(|b| serde_json::to_value(b).ok()),
    };
    print_remote(&json);
    if report.ok && !warned {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
