//! The operator console without a browser: sign-in, cookies, cross-site refusal, expiry, and
//! that no page carries the admin key or an agent secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use pool_http::console::ConsoleConfig;
use pool_http::{AppState, ServiceInfo};
use pool_provisioner::testing::{TestPool, unthrottled};
use secrecy::{ExposeSecret, SecretString};
use tower::ServiceExt;

const KEY: &str = "console-admin-key-0123456789";

struct Console {
    pool: TestPool,
    app: Router,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Console {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A console over a provisioner whose settings `adjust` changes.
    async fn start_with(adjust: impl FnOnce(&mut pool_provisioner::ProvisionerConfig)) -> Self {
        let pool = TestPool::start(unthrottled()).await;
        let mut config = pool_provisioner::testing::provisioner_config(&pool.sim, None);
        adjust(&mut config);
        let provisioner = pool.provisioner(config);
        Self::serving(pool, provisioner)
    }

    /// A console over a pool of two runtimes, `openclaw` (the default) and `hermes`.
    async fn two_shapes() -> Self {
        let pool = TestPool::two_shapes(unthrottled()).await;
        let provisioner = pool.provisioner.clone();
        Self::serving(pool, provisioner)
    }

    fn serving(pool: TestPool, provisioner: pool_provisioner::Provisioner) -> Self {
        let app = pool_http::router(AppState {
            provisioner,
            control: std::sync::Arc::new(pool_http::DetachedControl::default()),
            admin_key: SecretString::from(KEY),
            info: ServiceInfo {
                version: "test".into(),
            },
            console: ConsoleConfig::default(),
            webhook_secret: None,
            security: pool_http::SecurityConfig::default(),
        });
        Self { pool, app }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        cookie: Option<&str>,
        form: Option<String>,
        origin: Option<&str>,
    ) -> Page {
        let mut r = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "pool.example");
        if let Some(c) = cookie {
            r = r.header(
                header::COOKIE,
                format!("{}={c}", pool_http::console::SECURE_SESSION_COOKIE),
            );
        }
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        let body = match form {
            Some(f) => {
                r = r.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(f)
            }
            None => Body::empty(),
        };
        let response = self.app.clone().oneshot(r.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text =
            String::from_utf8_lossy(&response.into_body().collect().await.unwrap().to_bytes()).to_string();
        Page {
            status,
            headers,
            text,
        }
    }

    async fn sign_in(&self) -> (String, String) {
        let page = self
            .request(Method::POST, "/login", None, Some(format!("key={KEY}")), None)
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        let cookie = page
            .headers
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(cookie.contains(flag), "{flag} in {cookie}");
        }
        let token = cookie
            .strip_prefix("__Host-pool_session=")
            .unwrap_or_else(|| panic!("a __Host- cookie: {cookie}"))
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let fleet = self.request(Method::GET, "/", Some(&token), None, None).await;
        assert_eq!(fleet.status, StatusCode::OK);
        let csrf = fleet
            .text
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        (token, csrf)
    }
}

#[tokio::test]
async fn signing_in_needs_the_key_and_sets_a_strict_http_only_cookie() {
    let console = Console::start().await;
    let page = console.request(Method::GET, "/", None, None, None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.headers.get(header::LOCATION).unwrap(), "/login");
    let wrong = console
        .request(Method::POST, "/login", None, Some("key=nope".into()), None)
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get(header::SET_COOKIE).is_none());
    let (token, _) = console.sign_in().await;
    let page = console.request(Method::GET, "/", Some(&token), None, None).await;
    assert!(
        page.headers
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
}

#[tokio::test]
async fn no_page_script_redirect_or_cookie_carries_the_key_or_an_agent_secret() {
    let console = Console::start().await;
    let ids = console.pool.idle_agents(2).await;
    let (token, csrf) = console.sign_in().await;
    let launched = console
        .request(
            Method::POST,
            "/console/launch",
            Some(&token),
            Some(format!("csrf={csrf}&agentName=Ada&instructions=hi&joinUrl=")),
            None,
        )
        .await;
    assert_eq!(launched.status, StatusCode::OK, "{}", launched.text);
    assert!(launched.text.contains("<svg"), "a QR code drawn locally");
    assert!(launched.text.contains("https://popup.convos.org/"));
    let mut everything = vec![launched.text.clone(), token.clone()];
    for path in [
        "/",
        "/login",
        "/console/app.js",
        "/console/app.css",
        "/console/fleet.json",
        "/?status=claimed",
    ] {
        let page = console.request(Method::GET, path, Some(&token), None, None).await;
        everything.push(page.text);
        everything.push(format!("{:?}", page.headers));
    }
    for id in &ids {
        everything.push(
            console
                .request(Method::GET, &format!("/agents/{id}"), Some(&token), None, None)
                .await
                .text,
        );
    }
    let mut secrets = vec![KEY.to_string()];
    for id in &ids {
        let agent = console.pool.store.agent(id).await.unwrap().unwrap();
        let s = agent.secrets.unwrap();
        secrets.extend(
            [&s.gateway_token, &s.agent_api_token]
                .iter()
                .map(|x| x.expose_secret().to_string()),
        );
    }
    for secret in &secrets {
        assert!(
            everything.iter().all(|text| !text.contains(secret.as_str())),
            "a secret leaked into the console"
        );
    }
}

#[tokio::test]
async fn a_cross_site_post_is_refused_and_changes_nothing() {
    let console = Console::start().await;
    let ids = console.pool.idle_agents(1).await;
    let (token, csrf) = console.sign_in().await;
    let kill = format!("/console/kill/{}", ids[0]);
    for (form, origin) in [
        (String::new(), None),                                  // no CSRF token
        ("csrf=forged".to_string(), None),                      // a wrong one
        (format!("csrf={csrf}"), Some("https://evil.example")), // the right one, from elsewhere
    ] {
        let page = console
            .request(Method::POST, &kill, Some(&token), Some(form), origin)
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(
        console.pool.store.counts().await.unwrap().idle,
        1,
        "nothing was killed"
    );
    let page = console
        .request(
            Method::POST,
            &kill,
            Some(&token),
            Some(format!("csrf={csrf}")),
            Some("https://pool.example"),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(console.pool.store.counts().await.unwrap().idle, 0);
}

/// Must show (issue 16): the console's add goes through the same capacity check as the API, so
/// it respects `POOL_MAX_TOTAL`.
#[tokio::test]
async fn the_consoles_add_respects_pool_max_total() {
    let console = Console::start().await;
    console.pool.set_settings(|s| s.max_total = Some(2)).await;
    let (token, csrf) = console.sign_in().await;
    let add = |count: u32| {
        console.request(
            Method::POST,
            "/console/add",
            Some(&token),
            Some(format!("csrf={csrf}&count={count}")),
            Some("https://pool.example"),
        )
    };
    let refused = add(3).await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    let location = refused.headers[header::LOCATION].to_str().unwrap().to_string();
    assert!(location.contains("POOL_MAX_TOTAL"), "{location}");
    assert_eq!(
        console.pool.store.counts().await.unwrap().total(),
        0,
        "nothing was created"
    );
    let accepted = add(2).await;
    assert!(
        accepted.headers[header::LOCATION]
            .to_str()
            .unwrap()
            .contains("Creating+2"),
        "{:?}",
        accepted.headers
    );
    assert_eq!(console.pool.store.counts().await.unwrap().total(), 2);
    let refused = add(1).await;
    assert!(
        refused.headers[header::LOCATION]
            .to_str()
            .unwrap()
            .contains("POOL_MAX_TOTAL")
    );
    assert_eq!(console.pool.store.counts().await.unwrap().total(), 2);
}

#[tokio::test]
async fn an_expired_session_and_a_signed_out_one_are_refused() {
    let console = Console::start().await;
    let (expired, _) = console.sign_in().await;
    console
        .pool
        .db
        .client()
        .await
        .batch_execute("UPDATE console_sessions SET expires_at = now() - interval '1 second'")
        .await
        .unwrap();
    let page = console
        .request(Method::GET, "/", Some(&expired), None, None)
        .await;
    assert_eq!(page.headers.get(header::LOCATION).unwrap(), "/login", "expired");
    let data = console
        .request(Method::GET, "/console/fleet.json", Some(&expired), None, None)
        .await;
    assert_eq!(data.status, StatusCode::UNAUTHORIZED);

    let (token, csrf) = console.sign_in().await;
    let out = console
        .request(
            Method::POST,
            "/logout",
            Some(&token),
            Some(format!("csrf={csrf}")),
            None,
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.headers
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let page = console.request(Method::GET, "/", Some(&token), None, None).await;
    assert_eq!(
        page.headers.get(header::LOCATION).unwrap(),
        "/login",
        "signed out"
    );
}

/// Must show (issue 14): the settings form changes the stored settings, a bad value changes
/// nothing and says which field; the fleet page shows the chart, the target and, while the
/// creation brake is engaged, a banner naming the last failure with a resume button.
#[tokio::test]
async fn the_settings_form_the_chart_and_the_brake_banner() {
    let console = Console::start().await;
    let (token, csrf) = console.sign_in().await;
    let post = |path: &'static str, form: String| {
        console.request(
            Method::POST,
            path,
            Some(&token),
            Some(form),
            Some("https://pool.example"),
        )
    };
    let stored = || async { console.pool.store.settings().await.unwrap() };
    let before = stored().await;

    let refused = post(
        "/console/settings",
        format!("csrf={csrf}&minIdle=3&maxTotal=2&createFailureLimit=5"),
    )
    .await;
    let notice = refused.headers[header::LOCATION].to_str().unwrap().to_string();
    assert!(
        notice.contains("not+changed") && notice.contains("maxTotal"),
        "{notice}"
    );
    assert_eq!(stored().await, before, "a refused form changes nothing");

    let saved = post(
        "/console/settings",
        format!("csrf={csrf}&minIdle=3&maxTotal=&idleSchedule=&maxIdleAgeMinutes=90&createFailureLimit=4"),
    )
    .await;
    let notice = saved.headers[header::LOCATION].to_str().unwrap().to_string();
    assert!(notice.contains("saved"), "{notice}");
    let after = stored().await;
    assert_eq!(after.settings.min_idle, 3);
    assert_eq!(after.settings.max_total, None);
    assert_eq!(after.settings.max_idle_age, Some(Duration::from_secs(90 * 60)));
    assert_eq!(after.settings.create_failure_limit, 4);
    assert_eq!(after.updated_by, "console");

    // Without the CSRF token the form is refused.
    let forged = post("/console/settings", "minIdle=9&createFailureLimit=4".into()).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(stored().await.settings.min_idle, 3);

    // A sample and a claim refusal for the chart, and an engaged brake.
    let store = &console.pool.store;
    store
        .record_sample(&pool_store::PoolSample {
            idle: 2,
            claimed: 1,
            warm: 2,
            target: 3,
            reason: "target 3 = floor 3 from minIdle (demand 0)".into(),
        })
        .await
        .unwrap();
    store.record_refused_claim("admin", 5, "openclaw").await.unwrap();
    for _ in 0..4 {
        store
            .record_creation_failure("openclaw", "projectCreate: Problem processing request", 4)
            .await
            .unwrap();
    }
    let page = console.request(Method::GET, "/", Some(&token), None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    for expected in [
        "<svg class=\"chart\"",
        "series idle",
        "series target",
        "0 claims served, 1 refused",
        "target 3 = floor 3 from minIdle",
        "Creation of openclaw is stopped",
        "projectCreate: Problem processing request",
        "action=\"/console/resume\"",
        "value=\"90\"",
    ] {
        assert!(page.text.contains(expected), "{expected} on the fleet page");
    }
    let resumed = post("/console/resume", format!("csrf={csrf}")).await;
    assert!(
        resumed.headers[header::LOCATION]
            .to_str()
            .unwrap()
            .contains("resumed")
    );
    assert!(!store.brake().await.unwrap().engaged());
    let page = console.request(Method::GET, "/", Some(&token), None, None).await;
    assert!(!page.text.contains("Creation of openclaw is stopped"));
}

/// Issue 20: `/?notice=` showed whatever text a link carried; now only a notice the console
/// wrote itself (signed) is shown. And an agent's invite is a link (and a QR code) only when it
/// is a Convos invite.
#[tokio::test]
async fn only_the_consoles_own_notices_are_shown_and_only_convos_invites_are_links() {
    let console = Console::start().await;
    let (token, csrf) = console.sign_in().await;
    let forged = console
        .request(
            Method::GET,
            "/?notice=Your+session+expired%2C+sign+in+at+evil.example",
            Some(&token),
            None,
            None,
        )
        .await;
    assert_eq!(forged.status, StatusCode::OK);
    assert!(!forged.text.contains("evil.example"), "attacker text shown");
    let forged_sig = console
        .request(
            Method::GET,
            "/?notice=Hello+attacker&sig=00ff",
            Some(&token),
            None,
            None,
        )
        .await;
    assert!(!forged_sig.text.contains("Hello attacker"));
    let own = console
        .request(
            Method::POST,
            "/console/add",
            Some(&token),
            Some(format!("csrf={csrf}&count=1")),
            Some("https://pool.example"),
        )
        .await;
    let location = own.headers[header::LOCATION].to_str().unwrap().to_string();
    let shown = console
        .request(Method::GET, &location, Some(&token), None, None)
        .await;
    assert!(
        shown.text.contains("Creating 1 agent(s)."),
        "the console's own notice: {location}"
    );

    // A claimed agent whose agent answered a foreign invite: no link on the fleet page.
    let id = console.pool.idle_agents(1).await.remove(0);
    console
        .pool
        .db
        .client()
        .await
        .execute(
            "UPDATE agent_metadata SET status = 'claimed', claimed_at = now(), invite_url = 'https://evil.example/phish' WHERE id = $1",
            &[&id.as_str()],
        )
        .await
        .unwrap();
    let fleet = console.request(Method::GET, "/", Some(&token), None, None).await;
    assert!(
        !fleet.text.contains("href=\"https://evil.example"),
        "a foreign invite became a link"
    );
}

/// Issue 22: the fleet view shows each runtime's stock (tiers, target, monthly cost) and the
/// chart can be narrowed to one runtime's samples and claims.
#[tokio::test]
async fn the_fleet_view_shows_each_runtime_and_the_chart_shows_the_runtime_chosen() {
    let console = Console::two_shapes().await;
    let store = &console.pool.store;
    console.pool.idle_agents_of("openclaw", 1).await;
    let hermes = console.pool.idle_agents_of("hermes", 2).await;
    assert!(console.pool.provisioner.park(&hermes[0]).await.unwrap());
    let sample = |idle, target, reason: &str| pool_store::PoolSample {
        idle,
        claimed: 0,
        warm: idle,
        target,
        reason: reason.into(),
    };
    store
        .record_shape_sample("hermes", &sample(1, 4, "hermes target"))
        .await
        .unwrap();
    store
        .record_shape_sample("openclaw", &sample(1, 2, "openclaw target"))
        .await
        .unwrap();
    store
        .record_sample(&sample(2, 6, "openclaw: …; hermes: …"))
        .await
        .unwrap();
    for _ in 0..3 {
        store.record_refused_claim("admin", 5, "hermes").await.unwrap();
    }
    store.record_refused_claim("admin", 5, "openclaw").await.unwrap();
    let (token, _) = console.sign_in().await;

    let page = console.request(Method::GET, "/", Some(&token), None, None).await;
    assert_eq!(page.status, StatusCode::OK);
    let table = page
        .text
        .split("<table id=\"runtimes\">")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    let row = |key: &str| {
        table
            .split(&format!("<tr data-runtime=\"{key}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no row {key:?}: {table}"))
            .split("</tr>")
            .next()
            .unwrap()
            .to_string()
    };
    let cell = |row: &str, key: &str, field: &str| {
        row.split(&format!("data-stock=\"{key}:{field}\">"))
            .nth(1)
            .unwrap()
            .split("</td>")
            .next()
            .unwrap()
            .to_string()
    };
    let size = pool_sizing::AgentSize::ASSUMED;
    let hermes_row = row("hermes");
    assert_eq!(cell(&hermes_row, "hermes", "warm"), "1");
    assert_eq!(cell(&hermes_row, "hermes", "parked"), "1");
    assert_eq!(cell(&hermes_row, "hermes", "target"), "4");
    assert_eq!(
        cell(&hermes_row, "hermes", "cost"),
        format!(
            "${:.2} (${:.2} running + $0.15 parked)",
            size.monthly(1, 1),
            size.monthly(1, 0)
        )
    );
    let openclaw_row = row("openclaw");
    assert!(openclaw_row.contains("openclaw (default)"), "{openclaw_row}");
    assert_eq!(cell(&openclaw_row, "openclaw", "warm"), "1");
    assert_eq!(cell(&openclaw_row, "openclaw", "parked"), "0");
    let whole = row("");
    assert!(whole.contains("whole pool"), "{whole}");
    assert_eq!(cell(&whole, "", "warm"), "2");
    assert_eq!(cell(&whole, "", "parked"), "1");
    assert_eq!(cell(&whole, "", "target"), "6");
    assert!(
        cell(&whole, "", "cost").starts_with(&format!("${:.2} ", size.monthly(2, 1))),
        "{whole}"
    );
    assert!(
        page.text
            .contains("1 GB memory, 0.1 vCPU, 1 GB used on its volume")
    );
    // The whole pool's chart by default: every refusal, the whole pool's target.
    assert!(
        page.text
            .contains("<option value=\"\" selected>whole pool</option>")
    );
    assert!(
        page.text.contains("0 claims served, 4 refused"),
        "whole pool's claims"
    );

    // The hermes chart: its refusals only, its own samples.
    let hermes_chart = console
        .request(Method::GET, "/?runtime=hermes", Some(&token), None, None)
        .await;
    assert!(
        hermes_chart
            .text
            .contains("<option value=\"hermes\" selected>hermes</option>")
    );
    assert!(hermes_chart.text.contains("Last 24 hours: hermes"));
    assert!(
        hermes_chart.text.contains("0 claims served, 3 refused"),
        "hermes's claims only"
    );
    // An unknown runtime is the whole pool.
    let unknown = console
        .request(Method::GET, "/?runtime=%3Cscript%3E", Some(&token), None, None)
        .await;
    assert_eq!(unknown.status, StatusCode::OK);
    assert!(
        unknown
            .text
            .contains("<option value=\"\" selected>whole pool</option>")
    );
    assert!(!unknown.text.contains("<script>"));

    // The live update carries the same rows.
    let live = console
        .request(Method::GET, "/console/fleet.json", Some(&token), None, None)
        .await;
    let live: serde_json::Value = serde_json::from_str(&live.text).unwrap();
    let runtimes = live["runtimes"].as_array().unwrap();
    assert_eq!(
        runtimes
            .iter()
            .map(|r| r["key"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["openclaw", "hermes", ""]
    );
    assert_eq!(runtimes[1]["parked"], 1);
}

/// Issue 22: each runtime has its own settings and brake; the console's form shows and
/// changes one runtime's (`?runtime=`, the default runtime's without it), and a resume
/// releases only the brake of the runtime its banner names.
#[tokio::test]
async fn the_settings_form_and_the_resume_button_act_on_one_runtime() {
    let console = Console::start_with(|config| {
        config.shapes = pool_provisioner::testing::two_shapes(&config.default_shape().image.tag);
    })
    .await;
    let store = &console.pool.store;
    store
        .seed_shape_settings("hermes", &pool_provisioner::testing::test_settings())
        .await
        .unwrap();
    let (token, csrf) = console.sign_in().await;
    let post = |path: &'static str, form: String| {
        console.request(
            Method::POST,
            path,
            Some(&token),
            Some(form),
            Some("https://pool.example"),
        )
    };
    let settings = |shape: &'static str| async move { store.shape_settings(shape).await.unwrap() };

    let page = console.request(Method::GET, "/", Some(&token), None, None).await;
    assert!(
        page.text.contains("Settings of openclaw"),
        "the default runtime's"
    );
    let page = console
        .request(Method::GET, "/?runtime=hermes", Some(&token), None, None)
        .await;
    for expected in [
        "Settings of hermes",
        "name=\"runtime\" value=\"hermes\"",
        "href=\"/?runtime=openclaw\"",
    ] {
        assert!(page.text.contains(expected), "{expected} on the page");
    }

    // Where a settings form posted for `runtime` leads back to.
    let (post, csrf) = (&post, csrf.as_str());
    let save = |runtime: &'static str, min_idle: u32| async move {
        let form = format!("csrf={csrf}&runtime={runtime}&minIdle={min_idle}&createFailureLimit=5");
        let answer = post("/console/settings", form).await;
        answer.headers[header::LOCATION].to_str().unwrap().to_string()
    };
    let openclaw_before = settings("openclaw").await;
    let location = save("hermes", 4).await;
    assert!(
        location.starts_with("/?runtime=hermes&") && location.contains("saved"),
        "back to hermes's form: {location}"
    );
    assert_eq!(settings("hermes").await.settings.min_idle, 4);
    assert_eq!(settings("hermes").await.updated_by, "console");
    assert_eq!(
        settings("openclaw").await,
        openclaw_before,
        "openclaw's untouched"
    );

    // A runtime the pool does not serve: refused, naming the field; nothing changes.
    let hermes_before = settings("hermes").await;
    let location = save("claude", 9).await;
    assert!(
        location.contains("not+changed") && location.contains("runtime"),
        "{location}"
    );
    assert_eq!(settings("hermes").await, hermes_before);
    assert_eq!(settings("openclaw").await, openclaw_before);

    // Hermes's brake engages: its banner, not openclaw's; its resume releases it alone.
    store
        .record_creation_failure("hermes", "image pull failed", 1)
        .await
        .unwrap();
    let page = console.request(Method::GET, "/", Some(&token), None, None).await;
    assert!(page.text.contains("Creation of hermes is stopped"));
    assert!(!page.text.contains("Creation of openclaw is stopped"));
    assert!(page.text.contains("name=\"runtime\" value=\"hermes\""));
    let resumed = post("/console/resume", format!("csrf={csrf}&runtime=hermes")).await;
    let location = resumed.headers[header::LOCATION].to_str().unwrap().to_string();
    assert!(location.contains("resumed"), "{location}");
    assert!(!store.shape_brake("hermes").await.unwrap().engaged());
}

/// The fleet view lists the oldest 1,000 agents matching its filter and says so when there are
/// more (it is polled for its live update: it never loads a large fleet whole).
#[tokio::test]
async fn the_fleet_view_lists_the_oldest_thousand_agents_and_says_how_many_match() {
    let console = Console::start().await;
    let seed = |i: usize| pool_store::testing::SeedAgent {
        id: format!("shown{i:07}"),
        project_id: format!("project-shown-{i}"),
        environment_id: format!("environment-shown-{i}"),
        service_id: format!("service-shown-{i}"),
        domain: format!("shown-{i}.up.railway.app"),
        token: format!("token-shown-{i}"),
    };
    console
        .pool
        .db
        .seed_idle_agents(&(0..1_005).map(seed).collect::<Vec<_>>())
        .await;
    console
        .pool
        .db
        .client()
        .await
        .batch_execute("UPDATE agent_metadata SET status = 'crashed' WHERE id >= 'shown0001000'")
        .await
        .unwrap();
    let (token, _) = console.sign_in().await;
    let rows = |text: &str| text.matches("<tr data-id=\"").count();

    let all = console.request(Method::GET, "/", Some(&token), None, None).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(rows(&all.text), 1_000);
    assert!(
        all.text
            .contains("The oldest 1000 of 1005 agents; filter by status"),
        "the note"
    );
    assert!(all.text.contains("shown0000999") && !all.text.contains("shown0001000"));

    let crashed = console
        .request(Method::GET, "/?status=crashed", Some(&token), None, None)
        .await;
    assert_eq!(rows(&crashed.text), 5);
    assert!(!crashed.text.contains("id=\"rows-note\""), "all 5 shown: no note");
}
