//! Read-time enrichment through HTTP: user agents of real vendor payloads parsed, IPs located
//! through MaxMind DB files the test writes (IPv4 and IPv6, with the real reader), nothing
//! located without them, a bad file refused at start, and enrichment never stored: the stored
//! bytes, the export and the detail without `enrich=true` stay exactly as they were.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};
use trailhub::config::{EnrichmentConfig, Secret, Settings};
use trailhub::time::{format_micros, now_micros, HOUR};

use crate::support::data::ndjson;
use crate::support::hub::*;

const OKTA_CHROME: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/127.0.0.0 Safari/537.36";
const SLACK_CHROME: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_6) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/64.0.3282.186 Safari/537.36";

/// The normalised events of a connector's recorded page, as lines to post (an address the
/// vendor wrote that is not one is dropped: the ingest API refuses it).
fn fixture_lines(connector: &str, fixture: &str) -> Vec<Value> {
    let registry = trailhub::connectors::Registry::builtin().expect("definitions load");
    let c = registry.get(connector).expect("connector");
    let path = format!("{}/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let body = std::fs::read_to_string(&path).expect("fixture");
    trailhub::connectors::replay(&c, &body)
        .expect("page")
        .into_iter()
        .map(|e| {
            let mut v = serde_json::to_value(e.expect("record normalises")).expect("json");
            let ip_ok = v["actor"]["ip"]
                .as_str()
                .is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_ok());
            if !ip_ok {
                v["actor"]["ip"] = Value::Null;
            }
            v
        })
        .collect()
}

fn line(source_id: &str, ip: Option<&str>, agent: Option<&str>) -> Value {
    json!({
        "time": format_micros(now_micros() - HOUR),
        "source_id": source_id,
        "event_type": "user.session.start",
        "action": "login",
        "category": "authentication",
        "outcome": "success",
        "actor": {"id": "u-geo", "type": "user", "ip": ip, "user_agent": agent},
    })
}

fn ua(
    browser: Option<&str>,
    version: Option<&str>,
    os: Option<&str>,
    os_version: Option<&str>,
    device: &str,
) -> Value {
    json!({"browser": browser, "browser_version": version, "os": os, "os_version": os_version, "device_type": device})
}

fn schema_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/event.schema.json"
    ))
    .expect("schema file");
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

/// Every event of the timeline with `query`, one page (the tests hold fewer than 1,000).
async fn page(hub: &TestHub, query: &str) -> Vec<Value> {
    let (status, body) = hub
        .get(&format!("/api/v1/events?limit=1000&{query}"), Some(ADMIN))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["next_cursor"], Value::Null);
    body["events"].as_array().expect("events").clone()
}

#[tokio::test]
async fn user_agents_of_vendor_payloads_are_parsed_and_geo_is_null_without_files() {
    // the fixtures are copies of the vendors' documented payloads: where those are at hand, the
    // agents tested here are theirs
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/samples");
    for (file, agent) in [
        ("okta/system_log_page.json", OKTA_CHROME),
        ("slack/audit_logs_page.json", SLACK_CHROME),
        ("auth0/logs.json", "Go-Auth0-SDK/latest"),
    ] {
        if let Ok(text) = std::fs::read_to_string(samples.join(file)) {
            assert!(text.contains(agent), "{file} no longer holds {agent}");
        }
    }
    let hub = TestHub::start().await;
    let mut lines = fixture_lines("okta", "okta/logs/page.json");
    lines.extend(fixture_lines("slack", "slack/logs/page.json"));
    lines.extend(fixture_lines("auth0", "auth0/logs/page.json"));
    lines.push(line(
        "sdk-python",
        Some("81.2.69.142"),
        Some("okta-sdk-python/2.9"),
    ));
    lines.push(line("sdk-go", None, Some("Go-Auth0-SDK/latest")));
    lines.push(line("no-agent", Some("81.2.69.142"), None));
    hub.ingest(&lines).await;

    let expected = |agent: &str| match agent {
        OKTA_CHROME => ua(
            Some("Chrome"),
            Some("127.0.0.0"),
            Some("Mac OSX"),
            Some("10.15.7"),
            "desktop",
        ),
        SLACK_CHROME => ua(
            Some("Chrome"),
            Some("64.0.3282.186"),
            Some("Mac OSX"),
            Some("10.12.6"),
            "desktop",
        ),
        // Auth0's own rendering of an agent it could not parse
        "Other 0.0.0 / Other 0.0.0" => ua(None, None, None, None, "unknown"),
        "okta-sdk-python/2.9" => ua(
            Some("okta-sdk-python"),
            Some("2.9"),
            None,
            None,
            "api_client",
        ),
        "Go-Auth0-SDK/latest" => ua(
            Some("Go-Auth0-SDK"),
            Some("latest"),
            None,
            None,
            "api_client",
        ),
        other => panic!("an agent this test does not expect: {other}"),
    };
    let plain = page(&hub, "").await;
    let enriched = page(&hub, "enrich=true").await;
    assert_eq!(plain.len(), enriched.len());
    let validator = schema_validator();
    let mut seen = std::collections::BTreeSet::new();
    for (p, e) in plain.iter().zip(&enriched) {
        // the default timeline is untouched; the enriched copy is it plus one member
        assert!(p.get("enrichment").is_none(), "{p}");
        let mut stripped = e.clone();
        let enrichment = stripped
            .as_object_mut()
            .expect("object")
            .remove("enrichment")
            .expect("enriched");
        assert_eq!(&stripped, p);
        if let Err(err) = validator.validate(e) {
            panic!("an enriched event does not validate: {err}\n{e}");
        }
        // no geo file: never located
        assert_eq!(enrichment["geo"], Value::Null, "{e}");
        match p["actor"]["user_agent"].as_str().filter(|a| !a.is_empty()) {
            Some(agent) => {
                assert_eq!(enrichment["user_agent"], expected(agent), "{agent}");
                seen.insert(agent.to_string());
            }
            None => assert_eq!(enrichment["user_agent"], Value::Null, "{e}"),
        }
    }
    assert_eq!(seen.len(), 5, "every agent was met: {seen:?}");

    // the detail: exact stored bytes by default, a copy with the member on request
    let id = plain
        .iter()
        .find(|e| e["source_id"] == "sdk-python")
        .and_then(|e| e["id"].as_str())
        .expect("stored")
        .to_string();
    let (status, bytes) = hub.get_text(&format!("/api/v1/events/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!bytes.contains("\"enrichment\""), "{bytes}");
    let (status, detail) = hub
        .get(&format!("/api/v1/events/{id}?enrich=true"), Some(ADMIN))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        detail["enrichment"]["user_agent"]["browser"],
        "okta-sdk-python"
    );
    assert_eq!(detail["enrichment"]["geo"], Value::Null);
    let (status, explicit) = hub
        .get_text(&format!("/api/v1/events/{id}?enrich=false"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(explicit, bytes);
    for bad in ["enrich=yes", "enrich=true&enrich=true", "enriched=true"] {
        let (status, body) = hub
            .get(&format!("/api/v1/events/{id}?{bad}"), Some(ADMIN))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .expect("m")
                .contains("enrich"),
            "{body}"
        );
    }
    let (status, body) = hub.get("/api/v1/events?enrich=1", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("m")
        .contains("`enrich`"));
    hub.stop().await;
}

#[tokio::test]
async fn a_posted_event_cannot_smuggle_an_enrichment_into_storage() {
    let hub = TestHub::start().await;
    let forged = json!({"user_agent": {"browser": "Trusted Admin Console", "browser_version": "1",
        "os": null, "os_version": null, "device_type": "desktop"},
        "geo": {"country": "Nowhere", "country_code": "XX", "region": null, "city": null,
        "latitude": null, "longitude": null, "asn": 1, "organization": "Forged"}});
    let mut smuggler = line("smuggler", Some("81.2.69.142"), Some("curl/8.5.0"));
    smuggler["enrichment"] = forged.clone();
    let honest = line("honest", Some("81.2.69.142"), Some("curl/8.5.0"));
    let (status, report) = hub
        .post(
            "/api/v1/events",
            Some(ADMIN),
            "application/x-ndjson",
            ndjson(&[smuggler.clone(), honest]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["stored"], 1, "{report}");
    assert_eq!(report["rejected_count"], 1, "{report}");
    let reason = report["rejected"][0]["error"].to_string();
    assert!(reason.contains("`enrichment`"), "{report}");
    // alone, in a JSON array: refused too
    let (status, report) = hub
        .post(
            "/api/v1/events",
            Some(ADMIN),
            "application/json",
            json!([smuggler]).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    // what is stored and exported carries no enrichment; a served one is derived afresh
    let (_, export) = hub.get_text("/api/v1/events/export?format=ndjson").await;
    assert!(!export.contains("\"enrichment\""), "{export}");
    assert!(!export.contains("Forged"));
    let events = page(&hub, "enrich=true").await;
    let honest = events
        .iter()
        .find(|e| e["source_id"] == "honest")
        .expect("stored");
    assert_eq!(honest["enrichment"]["user_agent"]["browser"], "curl");
    assert_eq!(honest["enrichment"]["geo"], Value::Null);
    assert!(!events.iter().any(|e| e["source_id"] == "smuggler"));
    hub.stop().await;
}

#[derive(Serialize)]
struct Names {
    en: &'static str,
}

#[derive(Serialize)]
struct Named {
    names: Names,
}

#[derive(Serialize)]
struct Country {
    iso_code: &'static str,
    names: Names,
}

#[derive(Serialize)]
struct Location {
    latitude: f64,
    longitude: f64,
}

/// A record of GeoIP2 City's shape (the fields the hub reads).
#[derive(Serialize)]
struct City {
    city: Named,
    country: Country,
    subdivisions: Vec<Named>,
    location: Location,
}

/// A record of GeoLite2 ASN's shape.
#[derive(Serialize)]
struct Asn {
    autonomous_system_number: u32,
    autonomous_system_organization: &'static str,
}

fn city(
    name: &'static str,
    region: &'static str,
    code: &'static str,
    country: &'static str,
    lat: f64,
    lon: f64,
) -> City {
    City {
        city: Named {
            names: Names { en: name },
        },
        country: Country {
            iso_code: code,
            names: Names { en: country },
        },
        subdivisions: vec![Named {
            names: Names { en: region },
        }],
        location: Location {
            latitude: lat,
            longitude: lon,
        },
    }
}

/// A city and an ASN database with an IPv4 and an IPv6 network each, written to `dir`.
fn write_databases(dir: &Path) -> (PathBuf, PathBuf) {
    use mmdb_writer::ipnet::IpNet;
    use mmdb_writer::Writer;
    let net = |s: &str| s.parse::<IpNet>().expect("network");
    // a description, as every MaxMind DB file has (the hub checks files whole, metadata too)
    let writer = |kind: &str| {
        Writer::builder(kind)
            .description(&[("en", "trailhub test database")])
            .build()
    };
    let mut w = writer("GeoLite2-City");
    w.insert(
        net("81.2.69.0/24"),
        &city(
            "London",
            "England",
            "GB",
            "United Kingdom",
            51.5142,
            -0.0931,
        ),
    )
    .expect("insert");
    w.insert(
        net("2a02:cf40::/32"),
        &city("Berlin", "Land Berlin", "DE", "Germany", 52.5244, 13.4105),
    )
    .expect("insert");
    let city_path = dir.join("city.mmdb");
    std::fs::write(&city_path, w.to_bytes().expect("bytes")).expect("write");
    let mut w = writer("GeoLite2-ASN");
    w.insert(
        net("81.2.69.0/24"),
        &Asn {
            autonomous_system_number: 20712,
            autonomous_system_organization: "Andrews & Arnold Ltd",
        },
    )
    .expect("insert");
    w.insert(
        net("2a02:cf40::/32"),
        &Asn {
            autonomous_system_number: 64496,
            autonomous_system_organization: "Example Carrier GmbH",
        },
    )
    .expect("insert");
    let asn_path = dir.join("asn.mmdb");
    std::fs::write(&asn_path, w.to_bytes().expect("bytes")).expect("write");
    (city_path, asn_path)
}

#[tokio::test]
async fn addresses_are_located_from_the_configured_mmdb_files_v4_and_v6() {
    let files = tempfile::tempdir().expect("tempdir");
    let (city_mmdb, asn_mmdb) = write_databases(files.path());
    let (c, a) = (city_mmdb.clone(), asn_mmdb.clone());
    let hub = TestHub::start_with(move |s| {
        s.enrichment = EnrichmentConfig {
            city_mmdb: Some(c),
            asn_mmdb: Some(a),
        }
    })
    .await;
    hub.ingest(&[
        line("v4", Some("81.2.69.142"), Some(OKTA_CHROME)),
        line("v6", Some("2a02:cf40:1234::7"), Some("okta-sdk-python/2.9")),
        line("private", Some("10.0.0.1"), None),
        line("none", None, None),
    ])
    .await;
    let events = page(&hub, "enrich=true").await;
    let enrichment = |source: &str| {
        events
            .iter()
            .find(|e| e["source_id"] == source)
            .map(|e| e["enrichment"].clone())
            .expect("stored")
    };
    assert_eq!(
        enrichment("v4")["geo"],
        json!({"country": "United Kingdom", "country_code": "GB", "region": "England",
            "city": "London", "latitude": 51.5142, "longitude": -0.0931,
            "asn": 20712, "organization": "Andrews & Arnold Ltd"})
    );
    assert_eq!(enrichment("v4")["user_agent"]["browser"], "Chrome");
    assert_eq!(
        enrichment("v6")["geo"],
        json!({"country": "Germany", "country_code": "DE", "region": "Land Berlin",
            "city": "Berlin", "latitude": 52.5244, "longitude": 13.4105,
            "asn": 64496, "organization": "Example Carrier GmbH"})
    );
    assert_eq!(
        enrichment("private"),
        json!({"user_agent": null, "geo": null})
    );
    assert_eq!(enrichment("none"), json!({"user_agent": null, "geo": null}));
    let validator = schema_validator();
    for e in &events {
        assert!(validator.is_valid(e), "{e}");
    }
    // the detail says the same
    let id = events
        .iter()
        .find(|e| e["source_id"] == "v6")
        .and_then(|e| e["id"].as_str())
        .expect("id");
    let (_, detail) = hub
        .get(&format!("/api/v1/events/{id}?enrich=true"), Some(ADMIN))
        .await;
    assert_eq!(detail["enrichment"], enrichment("v6"));
    // and the actor view counts countries from the files
    let (status, actor) = hub.get("/api/v1/actors/u-geo", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{actor}");
    assert_eq!(
        actor["countries"],
        json!([{"name": "Germany", "events": 1}, {"name": "United Kingdom", "events": 1}])
    );
    hub.stop().await;

    // only one of the two files: the other's fields stay null
    let c = city_mmdb.clone();
    let hub = TestHub::start_with(move |s| s.enrichment.city_mmdb = Some(c)).await;
    hub.ingest(&[line("v4", Some("81.2.69.142"), None)]).await;
    let events = page(&hub, "enrich=true").await;
    let geo = &events
        .iter()
        .find(|e| e["source_id"] == "v4")
        .expect("stored")["enrichment"]["geo"];
    assert_eq!(geo["city"], "London");
    assert_eq!(geo["asn"], Value::Null);
    assert_eq!(geo["organization"], Value::Null);
    hub.stop().await;
}

/// The start's error for these enrichment files (the hub must not start).
async fn start_error(city_mmdb: Option<PathBuf>, asn_mmdb: Option<PathBuf>) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::for_data_dir(dir.path());
    settings.admin_token = Some(Secret::new(ADMIN));
    settings.enrichment = EnrichmentConfig {
        city_mmdb,
        asn_mmdb,
    };
    match trailhub::server::start(settings).await {
        Ok(hub) => {
            let _ = hub.stop().await;
            panic!("the hub started");
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_bad_mmdb_file_stops_the_start_and_names_itself() {
    let files = tempfile::tempdir().expect("tempdir");
    let (city_mmdb, asn_mmdb) = write_databases(files.path());
    let garbage = files.path().join("garbage.mmdb");
    std::fs::write(&garbage, b"this is not a MaxMind DB file at all").expect("write");
    let truncated = files.path().join("truncated.mmdb");
    let bytes = std::fs::read(&city_mmdb).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    // a damaged record: the metadata and the tree are intact, a value in the data section is not
    let damaged = files.path().join("damaged.mmdb");
    let mut bad = bytes.clone();
    let at = bytes
        .windows(6)
        .position(|w| w == b"London")
        .expect("the city name is in the file");
    // a map type with a size far past the end of the file in place of the string's bytes
    bad[at - 1] = 0xff;
    bad[at] = 0xff;
    std::fs::write(&damaged, &bad).expect("write");
    // larger than any database the hub reads, without using the disk (sparse)
    let huge = files.path().join("huge.mmdb");
    std::fs::File::create(&huge)
        .expect("create")
        .set_len(trailhub::enrich::geo::MAX_MMDB_BYTES + 1)
        .expect("sparse");
    let missing = files.path().join("missing.mmdb");

    let cases = [
        (
            Some(garbage.clone()),
            None,
            "city_mmdb",
            "not a valid MaxMind DB",
        ),
        (
            Some(truncated.clone()),
            None,
            "city_mmdb",
            "not a valid MaxMind DB",
        ),
        (
            None,
            Some(damaged.clone()),
            "asn_mmdb",
            "not a valid MaxMind DB",
        ),
        (
            Some(city_mmdb.clone()),
            Some(huge.clone()),
            "asn_mmdb",
            "more than",
        ),
        (
            Some(missing.clone()),
            Some(asn_mmdb.clone()),
            "city_mmdb",
            "cannot read",
        ),
    ];
    for (city, asn, setting, reason) in cases {
        let path = city
            .clone()
            .filter(|_| setting == "city_mmdb")
            .or(asn.clone());
        let e = start_error(city, asn).await;
        assert!(e.contains(setting), "{e}");
        assert!(e.contains(reason), "{e}");
        let shown = path.expect("path").display().to_string();
        assert!(e.contains(&shown), "names the file {shown}: {e}");
    }

    // through the binary and a config file: it exits, saying why
    let data = tempfile::tempdir().expect("tempdir");
    let config = files.path().join("trailhub.toml");
    std::fs::write(
        &config,
        format!(
            "[enrichment]\ncity_mmdb = {:?}\n",
            garbage.display().to_string()
        ),
    )
    .expect("write");
    let (ok, out) = cli_with(
        data.path(),
        &[
            "--config",
            config.to_str().expect("path"),
            "--listen",
            "127.0.0.1:0",
            "serve",
        ],
        &[("TRAILHUB_ADMIN_TOKEN", ADMIN)],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("city_mmdb") && out.contains("not a valid MaxMind DB"),
        "{out}"
    );
}
