//! The CLI's client for a running hub's API

use anyhow::Context;

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: String) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("trailhub-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    async fn read(response: reqwest::Response) -> anyhow::Result<serde_json::Value> {
        let status = response.status();
        let body: serde_json::Value = response
            .json()
            .await
            .with_context(|| format!("hub answered {status} with a body that is not JSON"))?;
        if status.is_success() || status.as_u16() == 422 {
            return Ok(body);
        }
        let message = body["error"]["message"].as_str().unwrap_or("no message");
        anyhow::bail!("hub answered {status}: {message}")
    }

    pub async fn get_json(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .query(query)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        Self::read(response).await
    }

    pub async fn post_ndjson(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
        let content_type = if first == Some(b'[') {
            "application/json"
        } else {
            "application/x-ndjson"
        };
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        Self::read(response).await
    }

    /// DELETE; success answers carry no body.
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .delete(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        if response.status().is_success() {
            return Ok(());
        }
        Self::read(response).await.map(|_| ())
    }

    /// PATCH; unlike ingest, a 422 here is a refusal (e.g. a host change without credentials).
    pub async fn patch_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let (status, body) = self.send_json(reqwest::Method::PATCH, path, body).await?;
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            anyhow::bail!("hub answered {status}: {message}")
        }
        Ok(body)
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        Ok(self.send_json(reqwest::Method::POST, path, body).await?.1)
    }

    pub async fn put_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        Ok(self.send_json(reqwest::Method::PUT, path, body).await?.1)
    }

    /// POSTs raw bytes (an archive segment).
    pub async fn post_bytes(&self, path: &str, body: Vec<u8>) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let body = Self::read(response).await?;
        if status.as_u16() == 422 {
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            anyhow::bail!("hub answered {status}: {message}")
        }
        Ok(body)
    }

    async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<(reqwest::StatusCode, serde_json::Value)> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        Ok((status, Self::read(response).await?))
    }

    /// GETs `path` into the file `dest`, a chunk at a time; answers the bytes written and the
    /// `trailhub-sha256` header, if the hub sent one.
    pub async fn download(
        &self,
        path: &str,
        query: &[(String, String)],
        dest: &std::path::Path,
    ) -> anyhow::Result<(u64, Option<String>)> {
        use tokio::io::AsyncWriteExt;
        let url = format!("{}{path}", self.base);
        let mut response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .query(query)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        if !response.status().is_success() {
            Self::read(response).await?;
            anyhow::bail!("hub refused the download");
        }
        let sha256 = response
            .headers()
            .get("trailhub-sha256")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut file = tokio::fs::File::create(dest)
            .await
            .with_context(|| format!("cannot create {}", dest.display()))?;
        let mut bytes = 0u64;
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("the download from {url} broke off"))?
        {
            file.write_all(&chunk)
                .await
                .with_context(|| format!("cannot write {}", dest.display()))?;
            bytes += chunk.len() as u64;
        }
        file.flush().await?;
        file.sync_all().await?;
        Ok((bytes, sha256))
    }
}
