//! API tokens: minted once, stored only as SHA-256 hashes, each with a role

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Secret;
use crate::store::StoreError;
use crate::time::{now_micros, Micros};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manage integrations and tokens, read everything.
    Admin,
    /// Read events, histograms, exports and status.
    Viewer,
    /// Only post events.
    Ingest,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            "ingest" => Some(Role::Ingest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
            Role::Ingest => "ingest",
        }
    }
}

/// A stored token, without the token itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    #[serde(with = "crate::schema::rfc3339_micros")]
    pub created_at: Micros,
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub name: String,
    pub role: Role,
}

const BOOTSTRAP_ID: &str = "tok_bootstrap";

#[derive(Clone)]
pub struct Tokens {
    tree: sled::Tree,
    env_admin_hash: Option<[u8; 32]>,
}

fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source is available");
    b
}

pub fn new_token() -> Secret {
    use base64::Engine;
    Secret::new(format!(
        "th_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    ))
}

impl Tokens {
    pub fn new(tree: sled::Tree, env_admin: Option<&Secret>) -> Tokens {
        Tokens {
            tree,
            env_admin_hash: env_admin.map(|s| hash_token(s.expose())),
        }
    }

    /// Without `TRAILHUB_ADMIN_TOKEN`, the first start mints an admin token, writes it to
    /// `path` (0600) and returns it so that it can be printed once.
    pub fn bootstrap(&self, path: &std::path::Path) -> Result<Option<Secret>, BootstrapError> {
        // a token file found with looser permissions (copied in, restored from a backup,
        // chmod'ed) is tightened on every start, whether or not it is used
        if path.exists() {
            restrict_to_owner(path).map_err(|e| BootstrapError::Write(path.to_path_buf(), e))?;
        }
        if self.env_admin_hash.is_some() {
            return Ok(None);
        }
        let has_bootstrap = self.list()?.iter().any(|t| t.id == BOOTSTRAP_ID);
        if has_bootstrap && path.exists() {
            return Ok(None);
        }
        let token = new_token();
        write_private(path, token.expose())
            .map_err(|e| BootstrapError::Write(path.to_path_buf(), e))?;
        self.insert(
            &token,
            TokenRecord {
                id: BOOTSTRAP_ID.into(),
                name: "bootstrap admin".into(),
                role: Role::Admin,
                created_at: now_micros(),
            },
        )?;
        Ok(Some(token))
    }

    pub fn authenticate(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        let hash = hash_token(token);
        if self.env_admin_hash.as_ref() == Some(&hash) {
            return Ok(Some(Principal {
                token_id: "tok_env_admin".into(),
                name: "admin (TRAILHUB_ADMIN_TOKEN)".into(),
                role: Role::Admin,
            }));
        }
        let Some(v) = self.tree.get(hash)? else {
            return Ok(None);
        };
        let record: TokenRecord = serde_json::from_slice(&v)
            .map_err(|e| StoreError::Corrupt(format!("token record: {e}")))?;
        Ok(Some(Principal {
            token_id: record.id,
            name: record.name,
            role: record.role,
        }))
    }

    pub fn create(&self, name: &str, role: Role) -> Result<(TokenRecord, Secret), StoreError> {
        let token = new_token();
        let record = TokenRecord {
            id: format!("tok_{}", hex::encode(random_bytes::<6>())),
            name: name.to_string(),
            role,
            created_at: now_micros(),
        };
        self.insert(&token, record.clone())?;
        Ok((record, token))
    }

    fn insert(&self, token: &Secret, record: TokenRecord) -> Result<(), StoreError> {
        if record.id == BOOTSTRAP_ID {
            for item in self.tree.iter() {
                let (k, v) = item?;
                if serde_json::from_slice::<TokenRecord>(&v)
                    .map(|r| r.id == BOOTSTRAP_ID)
                    .unwrap_or(false)
                {
                    self.tree.remove(k)?;
                }
            }
        }
        let value = serde_json::to_vec(&record).expect("a token record serialises");
        self.tree.insert(hash_token(token.expose()), value)?;
        self.tree.flush()?;
        Ok(())
    }

    pub fn list(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.iter() {
            let (_, v) = item?;
            if let Ok(r) = serde_json::from_slice::<TokenRecord>(&v) {
                out.push(r);
            }
        }
        out.sort_by_key(|r| r.created_at);
        Ok(out)
    }

    /// Removes a token by id; true if it existed.
    pub fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        for item in self.tree.iter() {
            let (k, v) = item?;
            if serde_json::from_slice::<TokenRecord>(&v)
                .map(|r| r.id == id)
                .unwrap_or(false)
            {
                self.tree.remove(k)?;
                self.tree.flush()?;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the admin token to {0}: {1}")]
    Write(std::path::PathBuf, std::io::Error),
}

/// Mode 0600: only the hub's user may read or write the file.
pub fn restrict_to_owner(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn write_private(path: &std::path::Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options.open(path)?;
    // `mode` applies only to a file this call creates: an existing one keeps its permissions
    // unless they are set, and they must be before the token is written into it
    restrict_to_owner(path)?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}
