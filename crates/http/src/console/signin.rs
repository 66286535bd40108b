//! Console sign-in: the limit on failed attempts, the client's address it counts by, and the
//! hash a session is stored under.
//!
//! **Failed attempts** are counted per client address and over all addresses, in Postgres —
//! one count for every replica (a count in each replica's memory let a guesser that reaches N
//! replicas try N times as often) — over a sliding window (a minute by default):
//! - one address with [`ConsoleConfig::sign_in_failures_per_address`] (10) failures within the
//!   window is locked out for the window, then for twice as long at its next lockout within an
//!   hour, and so on up to an hour; while locked out, its attempts are refused with 429 and
//!   `Retry-After` *before* the key is compared, so even the right key is refused;
//! - [`ConsoleConfig::sign_in_failures_global`] (100) failures within the window from all
//!   addresses together refuse every sign-in until the window has room again (a guesser with
//!   many addresses gets that many guesses a minute, no more). Sessions already signed in and
//!   the bearer API are not affected.
//!
//! IPv6 addresses are counted by their /64 (one host usually has a whole /64). A success
//! clears its address's count. Each failure is logged at `warn` with the address, never with
//! what was tried.
//!
//! **Sessions** are stored as `SHA-256("pool-console-session" ‖ key fingerprint ‖ token)`,
//! where the key fingerprint is a SHA-256 of the admin key and the console password. The
//! database holds no token and nothing derived from the keys alone; when `POOL_API_KEY` or
//! `POOL_ADMIN_PASSWORD` changes, every session's hash changes with it and no session is found:
//! rotating the key signs everyone out.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ring::digest::{Context, SHA256};
use secrecy::ExposeSecret;

use std::collections::HashMap;

use axum::extract::{Form, FromRequest, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::views::LoginPage;
use super::{page, random_token, secure};
use crate::AppState;
use crate::auth::is_admin_key;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint of the credentials sessions are bound to.
fn key_fingerprint(state: &AppState) -> ring::digest::Digest {
    let mut context = Context::new(&SHA256);
    context.update(b"pool-console-keys\0");
    context.update(state.admin_key.expose_secret().as_bytes());
    context.update(b"\0");
    if let Some(password) = &state.console.admin_password {
        context.update(password.expose_secret().as_bytes());
    }
    context.finish()
}

/// The signature of a console notice (see `back`): hex HMAC-SHA-256 under a key bound to the
/// console's credentials.
pub(crate) fn notice_signature(state: &AppState, notice: &str) -> String {
    let mut context = Context::new(&SHA256);
    context.update(b"pool-console-notice\0");
    context.update(key_fingerprint(state).as_ref());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, context.finish().as_ref());
    hex(ring::hmac::sign(&key, notice.as_bytes()).as_ref())
}

/// True when `signature` is `notice`'s.
pub(crate) fn notice_is_signed(state: &AppState, notice: &str, signature: &str) -> bool {
    crate::auth::secret_matches(notice_signature(state, notice).as_bytes(), signature.as_bytes())
}

/// What a session token is stored (and looked up) as: hex SHA-256, bound to the keys.
pub(crate) fn session_hash(state: &AppState, token: &str) -> String {
    let mut context = Context::new(&SHA256);
    context.update(b"pool-console-session\0");
    context.update(key_fingerprint(state).as_ref());
    context.update(token.as_bytes());
    hex(context.finish().as_ref())
}

/// The client's address, as the sign-in limit counts it: the connection's peer, or with
/// `POOL_TRUSTED_PROXY_HOPS = n` the n-th `X-Forwarded-For` entry from the right (each proxy
/// appends the address it was reached from; entries further left are the client's own word).
/// `None` when neither is known (a router called without [`crate::serve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddress(pub(crate) Option<IpAddr>);

impl ClientAddress {
    pub(crate) fn of(headers: &HeaderMap, peer: Option<IpAddr>, trusted_hops: usize) -> Self {
        if trusted_hops == 0 {
            return Self(peer.map(normalize));
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        let chosen = entries
            .iter()
            .rev()
            .nth(trusted_hops - 1)
            .or(entries.first())
            .and_then(|e| e.parse::<IpAddr>().ok());
        Self(chosen.or(peer).map(normalize))
    }
}

/// IPv4-mapped addresses as IPv4; IPv6 by its /64.
fn normalize(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

impl ClientAddress {
    /// The address as the sign-in limit stores it (`unknown` when there is none).
    pub(crate) fn key(&self) -> String {
        self.0.map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
    }
}

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(Self::of(&parts.headers, peer, state.security.trusted_proxy_hops))
    }
}

/// `POST /login`: the sign-in limit is checked before the form is read; the form is read
/// under the body-read deadline; a success starts a session.
pub(super) async fn login(
    State(state): State<AppState>,
    client: ClientAddress,
    request: axum::extract::Request,
) -> Response {
    let store = state.provisioner.store();
    let limit = state.console.sign_in_limit();
    let address = client.key();
    // Refused before the form is even read: a locked-out guesser learns nothing, even with
    // the right key. The count is every replica's (Postgres).
    let refused = match store.sign_in_refused(&address, &limit).await {
        Ok(refused) => refused,
        Err(e) => {
            tracing::error!(error = %e, "could not read the sign-in limit");
            return secure(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unreachable; try again",
                )
                    .into_response(),
            );
        }
    };
    if let Some(retry_after) = refused {
        let secs = retry_after.as_secs().max(1);
        tracing::warn!(client = ?client.0, retry_after_s = secs, "console sign-in refused: too many failed attempts");
        let mut response = page(&LoginPage::new(format!(
            "Too many failed sign-ins. Try again in {secs} s."
        )));
        *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    // Read under the body-read deadline (408 when it passes), then parsed as a form.
    let (parts, body) = request.into_parts();
    let bytes = match crate::body::read_body(
        axum::extract::Request::from_parts(parts.clone(), body),
        &state,
        crate::MAX_BODY,
    )
    .await
    {
        Ok(bytes) => bytes,
        Err(e) => {
            let mut response = page(&LoginPage::new("The sign-in form did not arrive whole.".into()));
            *response.status_mut() = e.status;
            return response;
        }
    };
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
    let Ok(Form(form)) = Form::<HashMap<String, String>>::from_request(request, &state).await else {
        let mut response = page(&LoginPage::new("The sign-in form could not be read.".into()));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let presented = form.get("key").map(String::as_str).unwrap_or("");
    let password_ok = state
        .console
        .admin_password
        .as_ref()
        .is_some_and(|p| crate::auth::key_matches(p, presented));
    if !(is_admin_key(&state, presented) || password_ok) {
        match store.sign_in_failed(&address, &limit).await {
            Ok(Some(lockout)) => tracing::warn!(
                client = ?client.0,
                lockout_s = lockout.as_secs(),
                "console sign-in: too many failed attempts from one address; locked out"
            ),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not count a failed sign-in"),
        }
        tracing::warn!(client = ?client.0, "console sign-in failed: wrong key or password");
        let mut response = page(&LoginPage::new("That key is not right.".into()));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    if let Err(e) = store.sign_in_succeeded(&address).await {
        tracing::warn!(error = %e, "could not clear a sign-in count");
    }
    let (token, csrf) = (random_token(), random_token());
    if let Err(e) = state
        .provisioner
        .store()
        .create_session(&session_hash(&state, &token), &csrf, state.console.session_ttl)
        .await
    {
        tracing::error!(error = %e, "could not record a console session");
        return secure(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unreachable; try again",
            )
                .into_response(),
        );
    }
    let secure_flag = if state.console.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure_flag}",
        state.console.cookie_name(),
        state.console.session_ttl.as_secs()
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    secure(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_address_comes_from_the_trusted_hop_and_ipv6_counts_by_its_64() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.7".parse().unwrap_or_else(|_| unreachable!()),
        );
        let peer: Option<IpAddr> = "10.0.0.1".parse().ok();
        assert_eq!(
            ClientAddress::of(&headers, peer, 0).0,
            peer,
            "the header is ignored"
        );
        assert_eq!(
            ClientAddress::of(&headers, peer, 1).0,
            "203.0.113.7".parse().ok(),
            "the entry the proxy appended, not the client's own"
        );
        assert_eq!(ClientAddress::of(&HeaderMap::new(), peer, 1).0, peer);
        let v6: Option<IpAddr> = "2001:db8:1:2:3:4:5:6".parse().ok();
        assert_eq!(
            ClientAddress::of(&HeaderMap::new(), v6, 0).0,
            "2001:db8:1:2::".parse().ok()
        );
    }
}
