//! Where an integration may send its credentials: the origins of its URL-valued config fields
//! (`base_url` and every field a definition declares `kind = "url"`)
//!
//! Each URL field must be https; plain http is accepted only when the integration opts in with
//! `allow_insecure_http` and the host is a loopback one (a test double or a local proxy), since
//! anything else would hand the credentials to whoever is on the network path. The same check
//! runs when an integration is saved and again before every poll and token request, so a record
//! written before the rule existed cannot send a secret in the clear either.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::Connector;

/// The hosts `allow_insecure_http` applies to, for messages.
pub const LOOPBACK_HOSTS: &str = "127.0.0.0/8, ::1 or localhost";

/// Whether a URL's host is the loopback interface: an IP literal in 127.0.0.0/8 or `::1` (also
/// IPv4-mapped), or the name `localhost` itself (not its subdomains, which resolvers may send to
/// the network).
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // the URL parser has already normalised IP literals (`2130706433` is `127.0.0.1`)
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => host.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
    }
}

/// Checks a URL field's value; the error is a sentence for the field's message.
pub fn check_url(text: &str, allow_insecure_http: bool) -> Result<reqwest::Url, String> {
    let url = check_destination(text, allow_insecure_http)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not carry a query or fragment".into());
    }
    Ok(url)
}

/// Checks a URL a request is about to be sent to (it may have a query).
pub fn check_destination(text: &str, allow_insecure_http: bool) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry user info; put secrets in `credentials`".into());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_insecure_http && is_loopback(&url) => Ok(url),
        "http" if allow_insecure_http => Err(format!(
            "must be https: `allow_insecure_http` permits http only to a loopback host ({LOOPBACK_HOSTS})"
        )),
        "http" => Err(format!(
            "must be https (credentials would cross the network in the clear); for a loopback test double or proxy ({LOOPBACK_HOSTS}) set `allow_insecure_http: true`"
        )),
        _ => Err("must be an https URL".into()),
    }
}

/// `scheme://host:port` of a URL, as compared between two configurations.
pub fn origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

/// The URL fields of a config (defaults filled in) that are set, as `(name, value)`.
pub fn url_values<'a>(
    connector: &'a Connector,
    config: &'a BTreeMap<String, String>,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    connector
        .url_fields()
        .filter_map(|f| Some((f.name.as_str(), config.get(&f.name)?.as_str())))
}

/// Checks every URL field of an effective config; the error names the field (`config.x`).
pub fn check_config(
    connector: &Connector,
    config: &BTreeMap<String, String>,
    allow_insecure_http: bool,
) -> Result<(), (String, String)> {
    for (name, value) in url_values(connector, config) {
        check_url(value, allow_insecure_http).map_err(|m| (format!("config.{name}"), m))?;
    }
    Ok(())
}

/// Each URL field's origin (fields whose value does not parse are left out: they were refused
/// when saved).
pub fn origins(
    connector: &Connector,
    config: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    url_values(connector, config)
        .filter_map(|(name, value)| {
            let url = reqwest::Url::parse(value).ok()?;
            Some((name.to_string(), origin(&url)))
        })
        .collect()
}

/// The URL fields whose origin differs between two effective configs, as `config.x`.
pub fn moved_fields(
    connector: &Connector,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    let (a, b) = (origins(connector, before), origins(connector, after));
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| a.get(*n) != b.get(*n))
        .map(|n| format!("config.{n}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_everywhere_http_only_to_loopback_when_allowed() {
        assert!(check_url("https://acme.okta.com", false).is_ok());
        assert!(check_url("https://10.0.0.5:8443/api", false).is_ok());
        let e = check_url("http://acme.okta.com", false).expect_err("http");
        assert!(e.contains("allow_insecure_http"), "{e}");
        let e = check_url("http://acme.okta.com", true).expect_err("http to a remote host");
        assert!(e.contains("loopback"), "{e}");
        for ok in [
            "http://127.0.0.1:9",
            "http://127.8.9.10",
            "http://[::1]:8080",
            "http://localhost:3000/v1",
            "http://LOCALHOST.",
            "http://[::ffff:127.0.0.1]",
        ] {
            assert!(check_url(ok, true).is_ok(), "{ok}");
            assert!(check_url(ok, false).is_err(), "{ok} without the opt-in");
        }
        for remote in [
            "http://10.0.0.1",
            "http://192.168.1.1",
            "http://0.0.0.0",
            "http://localhost.evil.com",
            "http://evil.localhost",
            "http://[::ffff:10.0.0.1]",
            "http://2130706433.example",
        ] {
            assert!(check_url(remote, true).is_err(), "{remote}");
        }
        assert!(check_url("ftp://127.0.0.1", true).is_err());
        assert!(check_url("https://u:p@example.com", false).is_err());
        assert!(check_url("https://example.com/?a=1", false).is_err());
        assert!(check_url("https://example.com/#x", false).is_err());
        assert!(check_url("not a url", true).is_err());
    }

    #[test]
    fn moved_fields_compare_origins_not_paths() {
        let registry = super::super::Registry::builtin().expect("valid");
        let entra = registry.get("entra_audits").expect("entra");
        let config = |base: &str, login: &str| -> BTreeMap<String, String> {
            [("base_url", base), ("login_url", login), ("tenant_id", "t")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let a = config(
            "https://graph.microsoft.com/v1.0",
            "https://login.example.com",
        );
        let b = config(
            "https://graph.microsoft.com/beta",
            "https://login.example.com",
        );
        assert!(moved_fields(&entra, &a, &b).is_empty(), "a path change");
        let c = config("https://graph.microsoft.com/v1.0", "https://login.evil.com");
        assert_eq!(moved_fields(&entra, &a, &c), ["config.login_url"]);
        let d = config(
            "http://graph.microsoft.com/v1.0",
            "https://login.example.com",
        );
        assert_eq!(
            moved_fields(&entra, &a, &d),
            ["config.base_url"],
            "a scheme change"
        );
        let e = config(
            "https://graph.microsoft.com:8443/v1.0",
            "https://login.example.com",
        );
        assert_eq!(
            moved_fields(&entra, &a, &e),
            ["config.base_url"],
            "a port change"
        );
    }
}
