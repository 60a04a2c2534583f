//! End-to-end checks of `parse`: a file goes in, a connector or an error naming file and key
//! comes out. They exercise raw, model and validate together, so they sit beside all three.

use super::*;

const GITHUB: &str = include_str!("../../../connectors/github.toml");

#[test]
fn builtin_definitions_load() {
    for (file, text) in super::super::BUILTIN {
        parse(file, text).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn unknown_key_is_named_with_its_table() {
    let text = GITHUB.replace(
        "[pagination]\nkind = \"link_header\"",
        "[pagination]\nkind = \"link_header\"\nfoo = 1",
    );
    let e = parse("connectors/github.toml", &text).expect_err("unknown key");
    assert!(e.to_string().contains("connectors/github.toml"), "{e}");
    assert!(e.to_string().contains("pagination"), "{e}");
    assert!(e.to_string().contains("foo"), "{e}");
}

/// Found by the property tests (tests/integration/fuzz.rs): an empty file was refused
/// with an empty key, `connectors/x.toml: ``: missing field `name``.
#[test]
fn an_error_with_no_place_in_the_file_names_the_file_as_its_key() {
    for text in ["", "\n\n", "# only a comment\n"] {
        let e = parse("connectors/x.toml", text).expect_err("nothing to load");
        assert_eq!(e.key, "(file)", "{text:?}: {e}");
        assert!(e.message.contains("name"), "{e}");
    }
}

/// Found by the property tests: `name = ` (no value) was refused with an empty message,
/// `connectors/x.toml: `name`: ` — the toml crate gives no message for it.
#[test]
fn a_toml_syntax_error_always_says_something() {
    for text in [
        "name = ",
        "title = \"x\"\nname = ",
        "push_only = true\nname = ",
    ] {
        let e = parse("connectors/x.toml", text).expect_err("not TOML");
        assert_eq!(e.key, "name", "{text:?}: {e}");
        assert!(
            e.message.starts_with("not valid TOML at line"),
            "{text:?}: {e}"
        );
    }
}

#[test]
fn closed_enums_refuse_unknown_variants() {
    let text = GITHUB.replace("kind = \"link_header\"", "kind = \"page_number\"");
    let e = parse("connectors/github.toml", &text).expect_err("unknown pagination");
    assert!(e.to_string().contains("page_number"), "{e}");
}

#[test]
fn template_refs_are_checked() {
    let text = GITHUB.replace("{config.org}", "{config.organisation}");
    let e = parse("connectors/github.toml", &text).expect_err("undeclared");
    assert_eq!(e.key, "request.path");
    assert!(e.message.contains("organisation"), "{e}");
    let text = GITHUB.replace("Bearer {credentials.token}", "Bearer {credentials.pat}");
    let e = parse("connectors/github.toml", &text).expect_err("undeclared credential");
    assert_eq!(e.key, "auth.value");
}

/// A token endpoint's host must come from a URL field (validated, guarded against silent
/// changes) or be fixed in the file: a text field must not be able to move it.
#[test]
fn token_hosts_come_from_url_fields() {
    const ENTRA: &str = include_str!("../../../connectors/entra_audits.toml");
    let entra = parse("connectors/entra_audits.toml", ENTRA).expect("valid");
    let urls: Vec<&str> = entra.url_fields().map(|f| f.name.as_str()).collect();
    assert_eq!(urls, ["base_url", "login_url"]);
    let text = ENTRA.replace(
        "name = \"login_url\"\nkind = \"url\"",
        "name = \"login_url\"",
    );
    let e = parse("connectors/entra_audits.toml", &text).expect_err("text field as host");
    assert_eq!(e.key, "auth.token_url");
    let text = ENTRA.replace(
        "token_url = \"{config.login_url}/",
        "token_url = \"https://{config.tenant_id}.example.com/",
    );
    let e = parse("connectors/entra_audits.toml", &text).expect_err("host from a text field");
    assert_eq!(e.key, "auth.token_url");
    let text = ENTRA.replace(
        "token_url = \"{config.login_url}/",
        "token_url = \"https://login.example.com/",
    );
    parse("connectors/entra_audits.toml", &text).expect("a fixed https host");
    let text = ENTRA.replace(
        "default = \"https://login.microsoftonline.com\"",
        "default = \"http://login.microsoftonline.com\"",
    );
    let e = parse("connectors/entra_audits.toml", &text).expect_err("http default");
    assert!(e.key.ends_with(".default"), "{e}");
    let text = GITHUB.replace("name = \"token\"\n", "name = \"token\"\nkind = \"url\"\n");
    let e = parse("connectors/github.toml", &text).expect_err("credential as URL");
    assert!(e.key.starts_with("credentials["), "{e}");
    let text = GITHUB.replace("name = \"org\"\n", "name = \"org\"\nsecret = false\n");
    let e = parse("connectors/github.toml", &text).expect_err("secret on a config field");
    assert!(e.key.ends_with(".secret"), "{e}");
    assert!(entra
        .credential_field("client_secret")
        .is_some_and(|f| f.secret));
    assert!(entra
        .credential_field("client_id")
        .is_some_and(|f| !f.secret));
}

#[test]
fn bad_vocabulary_is_named() {
    let text = GITHUB.replace("category = \"data_access\"", "category = \"reading\"");
    let e = parse("connectors/github.toml", &text).expect_err("bad category");
    assert!(e.to_string().contains("reading"), "{e}");
    let text = GITHUB.replace("overlap = \"PT10M\"", "overlap = \"10 minutes\"");
    let e = parse("connectors/github.toml", &text).expect_err("bad duration");
    assert_eq!(e.key, "cursor.overlap");
}

/// The engine features the catalogue added refuse bad definitions, naming file and key.
#[test]
fn new_definition_features_are_validated() {
    let entra = include_str!("../../../connectors/entra_audits.toml");
    let file = "connectors/entra_audits.toml";
    let e = parse(
        file,
        &entra.replace(
            "token_url = \"{config.login_url}/{config.tenant_id}/oauth2/v2.0/token\"\n",
            "",
        ),
    )
    .expect_err("no token_url");
    assert_eq!((e.file.as_str(), e.key.as_str()), (file, "auth.token_url"));
    let e = parse(
        file,
        &entra.replace("scope = \"{config.scope}\"", "scope = \"{config.scopes}\""),
    )
    .expect_err("undeclared config");
    assert_eq!(e.key, "auth.scope");
    let e = parse(
        file,
        &entra.replace(
            "kind = \"oauth2_client_credentials\"",
            "kind = \"oauth2_client_credentials\"\nheader = \"X\"",
        ),
    )
    .expect_err("header on oauth2");
    assert_eq!(e.key, "auth.header");
    let e = parse(
        file,
        &entra.replace(
            "kind = \"next_url_in_body\"",
            "kind = \"next_url_in_body\"\nparam = \"x\"",
        ),
    )
    .expect_err("param on next_url_in_body");
    assert_eq!(e.key, "pagination.param");

    let gitlab = include_str!("../../../connectors/gitlab.toml");
    let file = "connectors/gitlab.toml";
    let e = parse(
        file,
        &gitlab.replace(", instance = \"/api/v4/audit_events\"", ""),
    )
    .expect_err("a choice without a path");
    assert_eq!(e.key, "request.path_choice.paths");
    assert!(e.message.contains("instance"), "{e}");
    let e = parse(
        file,
        &gitlab.replace("default = \"group\"", "default = \"project\""),
    )
    .expect_err("default outside choices");
    assert_eq!(e.key, "config[1].default");

    let jira = include_str!("../../../connectors/jira.toml");
    let file = "connectors/jira.toml";
    let e = parse(
        file,
        &jira.replace("unit = \"records\"", "unit = \"bytes\""),
    )
    .expect_err("unknown unit");
    assert!(e.to_string().contains("bytes"), "{e}");
    let e = parse(
        file,
        &jira.replace(
            "kind = \"offset\"\nparam = \"offset\"",
            "kind = \"link_header\"\nparam = \"offset\"",
        ),
    )
    .expect_err("unit on link_header");
    assert_eq!(e.key, "pagination");

    let op = include_str!("../../../connectors/onepassword_audit.toml");
    let file = "connectors/onepassword_audit.toml";
    let e = parse(
        file,
        &op.replace("body = { limit = 1000 }", "query = { limit = \"1000\" }"),
    )
    .expect_err("query on POST");
    assert_eq!(e.key, "request.query");
    let e = parse(file, &op.replace("method = \"POST\"", "method = \"PUT\""))
        .expect_err("unknown method");
    assert!(e.to_string().contains("PUT"), "{e}");

    let google = include_str!("../../../connectors/google_workspace.toml");
    let file = "connectors/google_workspace.toml";
    let e = parse(
        file,
        &google.replace("private_key = \"{credentials.private_key}\"\n", ""),
    )
    .expect_err("no private key");
    assert_eq!(e.key, "auth.private_key");
    let e = parse(
        file,
        &google.replace("issuer = ", "client_id = \"x\"\nissuer = "),
    )
    .expect_err("client_id on jwt bearer");
    assert_eq!(e.key, "auth.client_id");
}

/// `[request.until]`: a GET query parameter of its own, with `{time}`, on a time cursor.
#[test]
fn a_time_window_is_validated() {
    let slack = include_str!("../../../connectors/slack.toml");
    let file = "connectors/slack.toml";
    let until = "[request.until]\n# inclusive, like oldest: backfill windows ask for one window each\nparam = \"latest\"";
    assert!(slack.contains(until), "slack.toml declares its window");
    let c = parse(file, slack).expect("valid");
    let poll = c.poll.as_ref().expect("polled");
    let spec = poll.request.until.as_ref().expect("a window");
    assert_eq!(spec.param, "latest");
    let e = parse(
        file,
        &slack.replace(until, &until.replace("latest", "oldest")),
    )
    .expect_err("the since parameter twice");
    assert_eq!(e.key, "request.until.param");
    let e = parse(
        file,
        &slack.replace(
            "param = \"latest\"\ntemplate = \"{time}\"",
            "param = \"latest\"\ntemplate = \"now\"",
        ),
    )
    .expect_err("no time");
    assert_eq!(e.key, "request.until.template");
    let okta = include_str!("../../../connectors/okta.toml");
    let with_until = okta.replacen(
        "[pagination]",
        "[request.until]\nparam = \"until\"\ntemplate = \"{time}\"\nformat = \"rfc3339\"\n\n[pagination]",
        1,
    );
    let e = parse("connectors/okta.toml", &with_until).expect_err("a next_link cursor");
    assert_eq!(e.key, "request.until");
    assert!(e.to_string().contains("time"), "{e}");
    let op = include_str!("../../../connectors/onepassword_audit.toml");
    let with_until = op.replacen(
        "[pagination]",
        "[request.until]\nparam = \"end_time\"\ntemplate = \"{time}\"\nformat = \"rfc3339\"\n\n[pagination]",
        1,
    );
    let e = parse("connectors/onepassword_audit.toml", &with_until).expect_err("POST");
    assert_eq!(e.key, "request.until");
    assert!(e.to_string().contains("GET"), "{e}");
}

const WEBHOOK: &str = include_str!("../../../connectors/webhook.toml");

/// A connector is its parts: every built-in one is polled except `webhook`, which only
/// receives; a file that writes no polling key is push-only whether it says so or not.
#[test]
fn a_connector_has_a_poll_part_a_push_part_or_both() {
    for (file, text) in super::super::BUILTIN {
        let c = parse(file, text).expect("valid");
        assert_eq!(c.push_only(), c.name == "webhook", "{file}");
        assert!(c.poll.is_some() || c.webhook.is_some(), "{file}");
    }
    let c = parse("connectors/webhook.toml", WEBHOOK).expect("valid");
    assert!(c.poll.is_none());
    assert!(c.webhook.as_ref().is_some_and(|w| w.unified));
    assert!(WEBHOOK.contains("push_only = true\n"));
    let derived = parse(
        "connectors/webhook.toml",
        &WEBHOOK.replace("push_only = true\n", ""),
    )
    .expect("push-only without saying so");
    assert!(derived.poll.is_none() && derived.webhook.is_some());
    let github = parse("connectors/github.toml", GITHUB).expect("valid");
    assert!(github.poll.is_some() && github.webhook.is_some());
}

/// `push_only = true` and a polling key: refused naming the key, whatever the key holds.
#[test]
fn a_push_only_file_writes_no_polling_key() {
    let tables = [
        ("default_schedule", "default_schedule = \"0 */5 * * * *\"\n"),
        ("default_backfill", "default_backfill = \"P1D\"\n"),
        ("auth", "[auth]\nkind = \"header\"\n"),
        ("request", "[request]\npath = \"/\"\n"),
        ("pagination", "[pagination]\nkind = \"link_header\"\n"),
        ("cursor", "[cursor]\nkind = \"time\"\n"),
        ("rate_limit", "[rate_limit]\nrequests_per_minute = 1\n"),
        ("records", "[records]\npath = \"\"\n"),
        ("map", "[map]\nsource_id = \"id\"\n"),
    ];
    for (key, snippet) in tables {
        // top-level keys before the first table, tables at the end
        let text = if snippet.starts_with('[') {
            format!("{WEBHOOK}\n{snippet}")
        } else {
            WEBHOOK.replace(
                "push_only = true\n",
                &format!("push_only = true\n{snippet}"),
            )
        };
        let e = parse("connectors/webhook.toml", &text).expect_err(key);
        assert_eq!(e.key, key, "{e}");
        assert!(e.message.contains("never polled"), "{e}");
    }
}

/// Neither part, part of the poll part, a push part that needs a poll: each refused, named.
#[test]
fn the_parts_of_a_file_are_checked_first() {
    let neither = "name = \"x\"\ntitle = \"X\"\n[[config]]\nname = \"base_url\"\n";
    let e = parse("connectors/x.toml", neither).expect_err("no part");
    assert_eq!(e.key, "(file)", "{e}");
    assert!(e.message.contains("neither"), "{e}");
    let e = parse(
        "connectors/x.toml",
        &format!("push_only = false\n{neither}"),
    )
    .expect_err("no part");
    assert_eq!(e.key, "(file)", "{e}");

    let start = GITHUB.find("[cursor]").expect("a cursor table");
    let end = start + GITHUB[start..].find("\n\n").expect("a blank line after it");
    let e = parse(
        "connectors/github.toml",
        &format!("{}{}", &GITHUB[..start], &GITHUB[end..]),
    )
    .expect_err("no cursor");
    assert_eq!(e.key, "cursor", "{e}");
    assert!(e.message.starts_with("missing"), "{e}");

    let e = parse(
        "connectors/webhook.toml",
        &WEBHOOK.replace("push_only = true", "push_only = false"),
    )
    .expect_err("says it polls");
    assert_eq!(e.key, "push_only", "{e}");
    let nudge = WEBHOOK
        .replace("records = \"\"\n", "")
        .replace("unified = true\n", "");
    let e = parse("connectors/webhook.toml", &nudge).expect_err("a nudge with nothing to poll");
    assert_eq!(e.key, "webhook", "{e}");
    let mapped = WEBHOOK.replace("unified = true\n", "");
    let e = parse("connectors/webhook.toml", &mapped).expect_err("records with no [map]");
    assert_eq!(e.key, "webhook", "{e}");
}
