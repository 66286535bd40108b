//! The operator console: its password (`POOL_ADMIN_PASSWORD`), its cookies and how long its
//! sessions last.

use pool_http::console::ConsoleConfig;

use super::reader::Reader;

pub(super) fn read(r: &mut Reader<'_>) -> ConsoleConfig {
    let console = ConsoleConfig {
        admin_password: r.secret("POOL_ADMIN_PASSWORD"),
        secure_cookies: !r.flag("POOL_CONSOLE_INSECURE_COOKIES", false),
        session_ttl: r.millis("POOL_CONSOLE_SESSION_TTL_MS", 12 * 3600 * 1000),
        idle_timeout: r.millis("POOL_CONSOLE_IDLE_TIMEOUT_MS", 30 * 60 * 1000),
        ..ConsoleConfig::default()
    };
    let max_ttl = pool_http::console::MAX_SESSION_TTL;
    if console.session_ttl > max_ttl {
        r.problems.push(format!(
            "POOL_CONSOLE_SESSION_TTL_MS must be at most {} (24 h)",
            max_ttl.as_millis()
        ));
    }
    if console.idle_timeout > console.session_ttl {
        r.problems
            .push("POOL_CONSOLE_IDLE_TIMEOUT_MS must not be longer than POOL_CONSOLE_SESSION_TTL_MS".into());
    }
    if console
        .admin_password
        .as_ref()
        .is_some_and(|p| secrecy::ExposeSecret::expose_secret(p).len() < 12)
    {
        r.problems
            .push("POOL_ADMIN_PASSWORD must be at least 12 characters".into());
    }
    console
}
