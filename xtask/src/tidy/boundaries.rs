//! Rules about which module may do what: the boundaries the design rests on, judged on the
//! facts of each file ([`super::facts`]) outside test code.
//! - `provider-call`: after creation, only the service proxy (`crates/provisioner/src/proxy/`)
//!   talks to AgentMail and Telnyx for an agent; the teardown and the orphan sweep may only list
//!   and delete inboxes.
//! - `provider-host`: a real provider's address (`https://api.agentmail.to`, …) is written only
//!   as a default of the binary's configuration or of `railway-api`'s, so every call can be
//!   pointed at the simulator and nothing reaches the internet unasked.
//! - `agent-variables`: only the creation saga sets an agent's variables (`upsert_variables`).
//! - `organisation-key-name`: no library names an organisation key's variable
//!   (`AGENTMAIL_API_KEY`, …): only the binary's configuration reads them, so no library can
//!   copy one into an agent's variables.
//! - `route-table`: the API's routes are declared only in `crates/http/src/route_table/`; the
//!   router mounts them from the table (no path literal), and the console's own pages are not
//!   under `/api`.
//!
//! The simulator plays the providers and Railway (same method names, their hosts), and the
//! developer tasks, the end-to-end harness, examples and benches are tooling: none is judged.

// The variables that hold an organisation's key: the very names the harness scans every
// agent's variables for.
use pool_provisioner::testing::ORGANISATION_KEY_VARIABLES;

use super::facts::{self, Fact};
use super::sources::{SourceFile, TargetKind};
use super::{Rule, Violation};

/// Where the rules do not look: the providers' side and developer tooling.
const NOT_JUDGED: &[&str] = &["crates/railway-sim/src", "xtask/", "tests/"];

/// Where the typed provider clients are defined.
const PROVIDER_CLIENTS: &str = "crates/provisioner/src/resources/";

/// The service proxy: the one module that serves an agent's email and SMS.
const PROXY: &str = "crates/provisioner/src/proxy/";

/// Calls of AgentMail and Telnyx made for an agent after its creation: the proxy's alone.
const PROXY_CALLS: &[&str] = &[
    "api_key",
    "create_inbox",
    "send_message",
    "list_messages",
    "list_threads",
    "get_message",
    "update_message",
    "get_attachment",
    "messaging_profile",
    "search_numbers",
    "order_number",
    "owns_number",
    "assign_profile",
    "detail_records",
];

/// Calls that clean up after an agent: the proxy, the teardown and the orphan sweep.
const CLEANUP_CALLS: &[&str] = &["list_inboxes", "delete_inbox"];

/// Who may clean up inboxes besides the proxy.
const CLEANERS: &[&str] = &[
    // An agent's teardown deletes its inbox.
    "crates/provisioner/src/teardown.rs",
    // The orphan sweep deletes inboxes no agent row knows.
    "crates/reconciler/src/sweep.rs",
];

/// The real providers' domains: any URL with a host under one of them.
const PROVIDER_DOMAINS: &[&str] = &[
    "agentmail.to",
    "telnyx.com",
    "openrouter.ai",
    "railway.com",
    "railway.app",
];

/// Where a provider's real address may be written: configuration defaults.
const PROVIDER_HOST_HOMES: &[&str] = &["bin/pool-manager/src/config/", "crates/railway-api/src/config.rs"];

/// Who may set an agent's variables.
const AGENT_VARIABLE_SETTERS: &[&str] = &[
    // Defined here.
    "crates/railway-api/src",
    // The creation saga's variables step.
    "crates/provisioner/src/saga/",
];

/// Who may name an organisation key's variable.
const ORGANISATION_KEY_READERS: &[&str] = &[
    // The binary: its configuration reads them, its start-up check names the token it tried.
    "bin/pool-manager/src/",
    // Test support: the scan of agents' variables for these very names.
    "crates/provisioner/src/testing.rs",
];

/// The http crate, whose API the route table describes.
const HTTP_SOURCES: &str = "crates/http/src/";

/// The table, the router that mounts it, and the console (HTML pages, not the API).
const ROUTE_TABLE: &str = "crates/http/src/route_table";
const ROUTER: &str = "crates/http/src/lib.rs";
const CONSOLE: &str = "crates/http/src/console/";

/// Methods that add routes to an axum router.
const ROUTE_METHODS: &[&str] = &["route", "route_service", "nest", "nest_service"];

/// Checks every file against the five rules.
pub fn check(files: &[SourceFile], violations: &mut Vec<Violation>) {
    for file in files {
        let tooling = matches!(
            file.target,
            TargetKind::Example | TargetKind::Bench | TargetKind::Build | TargetKind::Test
        );
        if file.scope.test || tooling || NOT_JUDGED.iter().any(|d| file.is_under(d)) {
            continue;
        }
        for (line, fact, test_code) in facts::of(&file.syntax) {
            if !test_code {
                judge(file, &file.at(line), &fact, violations);
            }
        }
    }
}

fn judge(file: &SourceFile, at: &str, fact: &Fact, violations: &mut Vec<Violation>) {
    let in_any = |dirs: &[&str]| dirs.iter().any(|d| file.is_under(d));
    let mut push = |rule, what: String| violations.push(Violation::new(rule, format!("{at}: {what}")));
    match fact {
        Fact::Call {
            name,
            method,
            first_literal,
        } => {
            let name = name.as_str();
            let providers = file.is_under(PROVIDER_CLIENTS) || file.is_under(PROXY);
            if PROXY_CALLS.contains(&name) && !providers {
                push(
                    Rule::ProviderCall,
                    format!(
                        "{name} is called outside {PROXY} (only the proxy talks to AgentMail and Telnyx for an agent)"
                    ),
                );
            }
            if CLEANUP_CALLS.contains(&name) && !providers && !in_any(CLEANERS) {
                push(
                    Rule::ProviderCall,
                    format!("{name} is called outside the proxy, the teardown and the orphan sweep"),
                );
            }
            if name == "upsert_variables" && !in_any(AGENT_VARIABLE_SETTERS) {
                push(
                    Rule::AgentVariables,
                    "upsert_variables is called outside crates/provisioner/src/saga/ (only the creation saga sets an agent's variables)".into(),
                );
            }
            if *method
                && ROUTE_METHODS.contains(&name)
                && file.is_under(HTTP_SOURCES)
                && !file.is_under(ROUTE_TABLE)
            {
                let api_path = first_literal.as_deref().filter(|p| p.starts_with("/api"));
                if !file.is_under(ROUTER) && !file.is_under(CONSOLE) {
                    push(
                        Rule::RouteTable,
                        format!("a route is added outside {ROUTER} (declare it in {ROUTE_TABLE})"),
                    );
                } else if let Some(path) = first_literal.as_deref().filter(|_| file.is_under(ROUTER)) {
                    push(
                        Rule::RouteTable,
                        format!("the router mounts {path:?} by hand (declare it in {ROUTE_TABLE})"),
                    );
                } else if let Some(path) = api_path {
                    push(
                        Rule::RouteTable,
                        format!("the console mounts the API path {path:?} (declare it in {ROUTE_TABLE})"),
                    );
                }
            }
        }
        Fact::Literal(text) => {
            if let Some(url) = provider_url(text).filter(|_| !in_any(PROVIDER_HOST_HOMES)) {
                push(
                    Rule::ProviderHost,
                    format!(
                        "{url} is written outside the configuration's defaults (take the address from configuration)"
                    ),
                );
            }
            if ORGANISATION_KEY_VARIABLES.contains(&text.as_str()) && !in_any(ORGANISATION_KEY_READERS) {
                push(
                    Rule::OrganisationKeyName,
                    format!(
                        "{text} is named outside the binary (an organisation's key must never reach a library, or an agent)"
                    ),
                );
            }
        }
    }
}

/// The first URL in `text` whose host is a real provider's (`https://api.telnyx.com/v2`).
fn provider_url(text: &str) -> Option<String> {
    text.match_indices("://").find_map(|(i, _)| {
        let rest = &text[i + 3..];
        let host_end = rest.find(['/', ':', '?', '#', '"', ' ']).unwrap_or(rest.len());
        let host = rest[..host_end].to_ascii_lowercase();
        PROVIDER_DOMAINS
            .iter()
            .any(|d| host == *d || host.ends_with(&format!(".{d}")))
            .then(|| {
                let start = text[..i]
                    .rfind(|c: char| !c.is_ascii_alphanumeric())
                    .map_or(0, |s| s + 1);
                text[start..i + 3 + host_end].to_string()
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations(files: &[SourceFile]) -> Vec<String> {
        let mut found = Vec::new();
        check(files, &mut found);
        found.iter().map(ToString::to_string).collect()
    }

    fn file(path: &str, text: &str) -> SourceFile {
        SourceFile::for_test(path, &["m"], text)
    }

    #[test]
    fn provider_call_fails_outside_the_proxy() {
        let broken = file(
            "crates/reconciler/src/tick.rs",
            "fn f() { mail.send_message(&inbox, &body); let k = telnyx.api_key(); }",
        );
        let sweep = file(
            "crates/reconciler/src/sweep.rs",
            "fn f() { mail.delete_inbox(&i); mail.order_number(&n, &p); }",
        );
        let claim = file(
            "crates/provisioner/src/claim.rs",
            "fn f() { mail.list_inboxes(); }",
        );
        assert_eq!(
            violations(&[broken, sweep, claim]),
            [
                "tidy: provider-call: crates/reconciler/src/tick.rs:1: send_message is called outside crates/provisioner/src/proxy/ (only the proxy talks to AgentMail and Telnyx for an agent)",
                "tidy: provider-call: crates/reconciler/src/tick.rs:1: api_key is called outside crates/provisioner/src/proxy/ (only the proxy talks to AgentMail and Telnyx for an agent)",
                "tidy: provider-call: crates/reconciler/src/sweep.rs:1: order_number is called outside crates/provisioner/src/proxy/ (only the proxy talks to AgentMail and Telnyx for an agent)",
                "tidy: provider-call: crates/provisioner/src/claim.rs:1: list_inboxes is called outside the proxy, the teardown and the orphan sweep",
            ]
        );
        let proxy = file(
            "crates/provisioner/src/proxy/sms.rs",
            "fn f() { telnyx.order_number(&n, &p); telnyx.send_message(&b, t); }",
        );
        let in_test = file(
            "crates/reconciler/src/tick.rs",
            "#[cfg(test)] mod tests { fn f() { mail.send_message(&i, &b); } }",
        );
        assert!(violations(&[proxy, in_test]).is_empty());
    }

    #[test]
    fn provider_host_fails_outside_the_configuration_defaults() {
        let broken = file(
            "crates/provisioner/src/resources/telnyx.rs",
            r#"const BASE: &str = "https://api.telnyx.com/v2"; fn f() { format!("https://api.agentmail.to/v0/{x}"); }"#,
        );
        assert_eq!(
            violations(&[broken]),
            [
                "tidy: provider-host: crates/provisioner/src/resources/telnyx.rs:1: https://api.telnyx.com is written outside the configuration's defaults (take the address from configuration)",
                "tidy: provider-host: crates/provisioner/src/resources/telnyx.rs:1: https://api.agentmail.to is written outside the configuration's defaults (take the address from configuration)",
            ]
        );
        let defaults = file(
            "bin/pool-manager/src/config/resources.rs",
            r#"fn f() { r.url("TELNYX_API_URL", "https://api.telnyx.com/v2"); }"#,
        );
        let not_a_url = file(
            "crates/http/src/x.rs",
            r#"const A: &str = "agentmail.to"; const B: &str = "https://notagentmail.to.example";"#,
        );
        assert!(violations(&[defaults, not_a_url]).is_empty());
    }

    #[test]
    fn agent_variables_fails_outside_the_saga() {
        let broken = file(
            "crates/provisioner/src/redeploy.rs",
            "async fn f() { railway.upsert_variables(&p, &e, &s, &v, true).await; }",
        );
        assert_eq!(
            violations(&[broken]),
            [
                "tidy: agent-variables: crates/provisioner/src/redeploy.rs:1: upsert_variables is called outside crates/provisioner/src/saga/ (only the creation saga sets an agent's variables)"
            ]
        );
        let saga = file(
            "crates/provisioner/src/saga/steps.rs",
            "async fn f() { railway.upsert_variables(&p, &e, &s, &v, true).await; }",
        );
        assert!(violations(&[saga]).is_empty());
    }

    #[test]
    fn organisation_key_name_fails_in_a_library() {
        let broken = file(
            "crates/provisioner/src/saga/steps.rs",
            r#"fn f() { set("AGENTMAIL_API_KEY", key); set("POOL_API_KEY", own); }"#,
        );
        assert_eq!(
            violations(&[broken]),
            [
                "tidy: organisation-key-name: crates/provisioner/src/saga/steps.rs:1: AGENTMAIL_API_KEY is named outside the binary (an organisation's key must never reach a library, or an agent)"
            ]
        );
        let config = file(
            "bin/pool-manager/src/config/resources.rs",
            r#"fn f() { r.secret("AGENTMAIL_API_KEY"); }"#,
        );
        assert!(violations(&[config]).is_empty());
    }

    #[test]
    fn route_table_fails_for_a_route_declared_elsewhere() {
        let elsewhere = file(
            "crates/http/src/proxy.rs",
            r#"fn f() { Router::new().route("/api/pool/x", post(h)); let rows = vec![route(Endpoint::X, "/api/x")]; }"#,
        );
        let by_hand = file(
            "crates/http/src/lib.rs",
            r#"fn f() { router.route(route.path, handler).route("/readyz", get(h)); }"#,
        );
        let console = file(
            "crates/http/src/console/mod.rs",
            r#"fn f() { Router::new().route("/console/add", post(add)).route("/api/pool/drain", post(d)); }"#,
        );
        assert_eq!(
            violations(&[elsewhere, by_hand, console]),
            [
                "tidy: route-table: crates/http/src/proxy.rs:1: a route is added outside crates/http/src/lib.rs (declare it in crates/http/src/route_table)",
                "tidy: route-table: crates/http/src/lib.rs:1: the router mounts \"/readyz\" by hand (declare it in crates/http/src/route_table)",
                "tidy: route-table: crates/http/src/console/mod.rs:1: the console mounts the API path \"/api/pool/drain\" (declare it in crates/http/src/route_table)",
            ]
        );
    }
}
