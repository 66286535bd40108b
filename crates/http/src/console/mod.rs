//! The operator console: server-rendered pages under `/`, signed in with a session cookie.
//!
//! Sign-in takes the admin key (or `POOL_ADMIN_PASSWORD` when set), with failed attempts
//! limited per client address and globally ([`signin`]), and sets an `HttpOnly`,
//! `SameSite=Strict`, `Secure`, `__Host-` session cookie (plain `pool_session` without
//! `Secure` only when running on plain HTTP locally) backed by a database row holding only the
//! token's hash, bound to the admin key, so every replica knows it and rotating the key signs
//! everyone out; sessions expire after a capped lifetime and after an idle period. Every form post carries the
//! session's CSRF token and a same-origin `Origin`; pages carry a strict Content-Security-Policy
//! and never contain the admin key, a password or any agent secret. Programs keep using the
//! bearer API.

mod agent_page;
mod chart;
mod rollout;
mod runtimes;
mod signin;
mod views;
mod when;

use std::collections::HashMap;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use pool_provisioner::ClaimInput;
use pool_store::AgentStatus;
use rand::Rng;
use secrecy::SecretString;

use crate::AppState;
use agent_page::AgentPage;
use signin::session_hash;
use views::{FleetPage, LaunchedPage, LoginPage, fleet_json};

/// The session cookie's name on plain HTTP (`POOL_CONSOLE_INSECURE_COOKIES`).
pub const SESSION_COOKIE: &str = "pool_session";
/// The session cookie's name over HTTPS: the `__Host-` prefix makes browsers insist on
/// `Secure`, `Path=/` and no `Domain`, so no other site or subdomain can set or shadow it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-pool_session";
/// The longest a session may be configured to last (`POOL_CONSOLE_SESSION_TTL_MS`).
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(24 * 3600);

/// Console settings.
#[derive(Clone)]
pub struct ConsoleConfig {
    /// `POOL_ADMIN_PASSWORD`: accepted at sign-in besides the admin key.
    pub admin_password: Option<SecretString>,
    /// Mark the cookie `Secure` and `__Host-`, and send HSTS (off only when running on plain
    /// HTTP locally).
    pub secure_cookies: bool,
    /// How long a session lasts at most, however active (at most [`MAX_SESSION_TTL`]).
    pub session_ttl: Duration,
    /// A session unused this long ends (`POOL_CONSOLE_IDLE_TIMEOUT_MS`).
    pub idle_timeout: Duration,
    /// Failed sign-ins from one client address within [`Self::sign_in_window`] before it is
    /// locked out.
    pub sign_in_failures_per_address: u32,
    /// Failed sign-ins from all addresses within [`Self::sign_in_window`] before every sign-in
    /// is refused for the rest of it.
    pub sign_in_failures_global: u32,
    /// The window failed sign-ins are counted over.
    pub sign_in_window: Duration,
}

impl ConsoleConfig {
    /// The sign-in limit every replica shares (see `signin.rs`).
    pub fn sign_in_limit(&self) -> pool_store::SignInLimit {
        pool_store::SignInLimit {
            per_address: self.sign_in_failures_per_address.max(1),
            global: self.sign_in_failures_global.max(1),
            window: self.sign_in_window,
            max_lockout: Duration::from_secs(3600),
            strikes_forgotten: Duration::from_secs(3600),
        }
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure_cookies {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        }
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            admin_password: None,
            secure_cookies: true,
            session_ttl: Duration::from_secs(12 * 3600),
            idle_timeout: Duration::from_secs(30 * 60),
            sign_in_failures_per_address: 10,
            sign_in_failures_global: 100,
            sign_in_window: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("admin_password", &self.admin_password.as_ref().map(|_| "***"))
            .field("secure_cookies", &self.secure_cookies)
            .field("session_ttl", &self.session_ttl)
            .field("idle_timeout", &self.idle_timeout)
            .field("sign_in_failures_per_address", &self.sign_in_failures_per_address)
            .field("sign_in_failures_global", &self.sign_in_failures_global)
            .field("sign_in_window", &self.sign_in_window)
            .finish()
    }
}

/// The console's routes. The signed-in operator's forms check the session before a byte of
/// their body is read; the sign-in form checks the sign-in limit before it reads the key.
pub fn routes(state: &AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/logout", post(logout))
        .route("/console/add", post(add))
        .route("/console/drain", post(drain))
        .route("/console/redeploy", post(redeploy))
        .route("/console/launch", post(launch))
        .route("/console/kill/{id}", post(kill))
        .route("/console/dismiss/{id}", post(dismiss))
        .route("/console/settings", post(settings_form::save))
        .route("/console/resume", post(settings_form::resume))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), session_first));
    Router::new()
        .route("/", get(fleet))
        .route("/login", get(login_page).post(signin::login))
        .route("/agents/{id}", get(agent))
        .route("/console/fleet.json", get(fleet_data))
        .route("/console/app.js", get(script))
        .route("/console/app.css", get(style))
        .merge(signed_in)
}

/// Middleware of the signed-in forms: no session, no body read — straight to the sign-in page.
async fn session_first(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if session_of(&state, request.headers(), false).await.is_none() {
        return to_login();
    }
    next.run(request).await
}

fn random_token() -> String {
    let mut rng = rand::rng();
    (0..32).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_string())
}

/// A signed-in operator.
struct Session {
    /// What the session is stored as (never the token itself).
    token_hash: String,
    csrf: String,
}

/// The signed-in operator, if any; this use restarts the session's idle period.
async fn session(state: &AppState, headers: &HeaderMap) -> Option<Session> {
    session_of(state, headers, true).await
}

async fn session_of(state: &AppState, headers: &HeaderMap, in_use: bool) -> Option<Session> {
    let token = cookie(headers, state.console.cookie_name())?;
    if token.len() != 64 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let token_hash = session_hash(state, &token);
    let (store, idle) = (state.provisioner.store(), state.console.idle_timeout);
    let found = if in_use {
        store.session(&token_hash, idle).await
    } else {
        store.peek_session(&token_hash, idle).await
    };
    let found = found.ok()??;
    Some(Session {
        token_hash,
        csrf: found.csrf_token,
    })
}

/// Security headers of every console answer.
fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: with the latter, browsers send `Origin: null` on the
    // console's own form posts, which the cross-site check must refuse.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn page(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => secure(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                html,
            )
                .into_response(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "console error").into_response()
        }
    }
}

fn to_login() -> Response {
    secure(Redirect::to("/login").into_response())
}

/// Back to the fleet with a notice. The notice travels in the URL, signed (an HMAC under a key
/// derived from the console's credentials): the fleet page shows only notices the console
/// wrote, never text an attacker put in a link (`/?notice=…` showed anything before).
fn back(state: &AppState, notice: &str) -> Response {
    back_to(state, None, notice)
}

/// [`back`] to the fleet page showing `runtime`'s settings (`None`: the default runtime's).
fn back_to(state: &AppState, runtime: Option<&str>, notice: &str) -> Response {
    let sig = signin::notice_signature(state, notice);
    let notice = form_encoded(notice);
    let page = match runtime {
        Some(r) => format!("/?runtime={}&notice={notice}&sig={sig}", form_encoded(r)),
        None => format!("/?notice={notice}&sig={sig}"),
    };
    secure(Redirect::to(&page).into_response())
}

/// `text` as a query string's value.
fn form_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A form post is accepted only with the session's CSRF token and, when the browser says
/// where it comes from, from this very origin.
fn check_post(
    headers: &HeaderMap,
    session: &Session,
    form: &HashMap<String, String>,
) -> Result<(), Box<Response>> {
    let refused = || {
        Err(Box::new(secure(
            (StatusCode::FORBIDDEN, "cross-site request refused").into_response(),
        )))
    };
    let presented = form.get("csrf").map(String::as_str).unwrap_or("");
    if !crate::auth::secret_matches(session.csrf.as_bytes(), presented.as_bytes()) {
        return refused();
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let same = origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host);
        if !same {
            return refused();
        }
    }
    Ok(())
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if session(&state, &headers).await.is_some() {
        return secure(Redirect::to("/").into_response());
    }
    page(&LoginPage::new(String::new()))
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(session) = session(&state, &headers).await else {
        return to_login();
    };
    if let Err(refusal) = check_post(&headers, &session, &form) {
        return *refusal;
    }
    let _ = state
        .provisioner
        .store()
        .delete_session(&session.token_hash)
        .await;
    let mut response = Redirect::to("/login").into_response();
    let secure_flag = if state.console.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cleared = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure_flag}",
        state.console.cookie_name()
    );
    if let Ok(value) = HeaderValue::from_str(&cleared) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    secure(response)
}

async fn fleet(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(session) = session(&state, &headers).await else {
        return to_login();
    };
    match FleetPage::load(&state, &session.csrf, &query).await {
        Ok(p) => page(&p),
        Err(e) => secure((StatusCode::SERVICE_UNAVAILABLE, e).into_response()),
    }
}

async fn fleet_data(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    // The page's refresh every few seconds: not an operator's doing, so the idle period goes
    // on (and nothing is written).
    if session_of(&state, &headers, false).await.is_none() {
        return secure(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"error": "sign in"})),
            )
                .into_response(),
        );
    }
    match fleet_json(&state, &query).await {
        Ok(v) => secure(axum::Json(v).into_response()),
        Err(e) => secure((StatusCode::SERVICE_UNAVAILABLE, e).into_response()),
    }
}

async fn agent(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let Some(session) = session(&state, &headers).await else {
        return to_login();
    };
    let Ok(id) = crate::routes::agent_id(&id) else {
        return secure((StatusCode::NOT_FOUND, "no such agent").into_response());
    };
    match AgentPage::load(&state, &session.csrf, &id).await {
        Ok(Some(p)) => page(&p),
        Ok(None) => secure((StatusCode::NOT_FOUND, "no such agent").into_response()),
        Err(e) => secure((StatusCode::SERVICE_UNAVAILABLE, e).into_response()),
    }
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../static/app.js"),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

fn count(form: &HashMap<String, String>) -> Option<u32> {
    form.get("count")
        .and_then(|c| c.trim().parse::<u32>().ok())
        .filter(|n| (1..=crate::routes::MAX_BATCH).contains(n))
}

/// Runs an action for a signed-in operator, after the cross-site checks.
macro_rules! signed_post {
    ($state:expr, $headers:expr, $form:expr) => {{
        let Some(session) = session(&$state, &$headers).await else {
            return to_login();
        };
        if let Err(refusal) = check_post(&$headers, &session, &$form) {
            return *refusal;
        }
        session
    }};
}

// Declared after `signed_post!`, so it can use it.
mod settings_form;

async fn add(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    signed_post!(state, headers, form);
    let Some(n) = count(&form) else {
        return back(&state, "Give a count from 1 to 20.");
    };
    if let Err(e) = state
        .provisioner
        .start_creations(pool_provisioner::CreationDemand::Exactly(n as usize))
        .await
    {
        return back(&state, &format!("Could not add agents: {e}"));
    }
    back(&state, &format!("Creating {n} agent(s)."))
}

async fn drain(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    signed_post!(state, headers, form);
    let Some(n) = count(&form) else {
        return back(&state, "Give a count from 1 to 20.");
    };
    match state.provisioner.drain(n as usize).await {
        Ok(ids) => back(&state, &format!("Draining {} agent(s).", ids.len())),
        Err(e) => back(&state, &format!("Drain failed: {e}")),
    }
}

async fn redeploy(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    signed_post!(state, headers, form);
    match state.provisioner.request_redeploy(None).await {
        Ok(p) => back(
            &state,
            &format!(
                "Redeploying to {}: {} requested, {} in progress, {} waiting.",
                p.image, p.requested, p.in_progress, p.waiting
            ),
        ),
        Err(e) => back(&state, &format!("Redeploy failed: {e}")),
    }
}

async fn kill(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    signed_post!(state, headers, form);
    let Ok(agent) = crate::routes::agent_id(&id) else {
        return back(&state, "No such agent.");
    };
    match state.provisioner.kill(&agent, "killed from the console").await {
        Ok(()) => {
            state.control.tick_soon();
            back(&state, &format!("Agent {id} is being torn down."))
        }
        Err(e) => back(&state, &format!("Kill failed: {e}")),
    }
}

async fn dismiss(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    signed_post!(state, headers, form);
    let Ok(agent) = crate::routes::agent_id(&id) else {
        return back(&state, "No such agent.");
    };
    match state.provisioner.dismiss_crashed(&agent).await {
        Ok(()) => back(&state, &format!("Agent {id} dismissed.")),
        Err(e) => back(&state, &format!("Dismiss failed: {e}")),
    }
}

async fn launch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let session = signed_post!(state, headers, form);
    let field = |k: &str| form.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let join = field("joinUrl");
    let input = ClaimInput {
        agent_name: field("agentName"),
        instructions: form.get("instructions").cloned().unwrap_or_default(),
        join_url: (!join.is_empty()).then_some(join),
        source: Some("console".into()),
        ..ClaimInput::default()
    };
    let result = state
        .provisioner
        .claim_as(pool_provisioner::CONSOLE_CLAIMANT, &input, None, Duration::ZERO)
        .await;
    state.control.tick_soon();
    match result {
        Ok(claimed) => page(&LaunchedPage::new(&session.csrf, &claimed)),
        Err(e) => back(&state, &format!("Launch failed: {e}")),
    }
}

/// Statuses the fleet view can filter by.
pub(crate) fn status_filter(query: &HashMap<String, String>) -> Option<AgentStatus> {
    query.get("status").and_then(|s| {
        AgentStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s && *st != AgentStatus::Deleted)
    })
}
