//! The one outbound HTTPS client builder of the workspace: hyper 1 over rustls with the ring
//! crypto provider (chosen here, explicitly, as the only provider) and webpki roots compiled
//! in. The Railway transport uses it, and so does every other outbound client that embeds
//! this crate (the pool's agent, OpenRouter and AgentMail client).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A pooled HTTP/1.1 client for `https://` and `http://` URLs with full-body requests.
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Extra trust for outbound TLS: certificates (PEM) trusted besides the webpki roots, e.g. a
/// test's self-signed certificate. Empty in production.
#[derive(Debug, Clone, Default)]
pub struct ExtraRoots {
    /// PEM-encoded certificates.
    pub pem: Vec<u8>,
}

/// Why a client could not be built.
#[derive(Debug, Clone, thiserror::Error)]
#[error("TLS setup: {0}")]
pub struct TlsSetupError(String);

/// How a client keeps its connections.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long a kept-alive connection may sit unused. Zero keeps none: every request opens
    /// a connection of its own (and over HTTPS, a handshake).
    pub idle_timeout: Duration,
    /// How many idle connections are kept per host.
    pub max_idle_per_host: usize,
    /// TLS sessions remembered for resumption. A resumed handshake skips the certificate
    /// chain and its verification. rustls' default is 256 tickets (up to 8 a host).
    pub tls_sessions: usize,
    /// Instead of `tls_sessions`: one ticket per host, in a store sized to a fleet of hosts
    /// walked in the same order every interval ([`crate::sessions::PerHostSessions`]).
    pub per_host_sessions: Option<Arc<crate::sessions::PerHostSessions>>,
    /// Trust besides the webpki roots.
    pub extra_roots: ExtraRoots,
}

impl ClientOptions {
    /// A few hosts, kept alive for `idle_timeout`, up to `max_idle_per_host` each.
    pub fn new(idle_timeout: Duration, max_idle_per_host: usize) -> Self {
        Self {
            idle_timeout,
            max_idle_per_host,
            tls_sessions: 256,
            per_host_sessions: None,
            extra_roots: ExtraRoots::default(),
        }
    }
}

/// Builds a client.
pub fn client(options: &ClientOptions) -> Result<HttpsClient, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // Small JSON requests: send them at once rather than waiting on Nagle's algorithm.
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in CertificateDer::pem_slice_iter(&options.extra_roots.pem) {
        let cert = cert.map_err(|e| TlsSetupError(format!("extra root certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| TlsSetupError(format!("extra root certificate: {e}")))?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.resumption = match &options.per_host_sessions {
        Some(store) => rustls::client::Resumption::store(store.clone()),
        None => rustls::client::Resumption::in_memory_sessions(options.tls_sessions.max(1)),
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    let max_idle = if options.idle_timeout.is_zero() {
        0
    } else {
        options.max_idle_per_host
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(options.idle_timeout)
        .pool_max_idle_per_host(max_idle)
        .build(https))
}
