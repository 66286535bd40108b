//! Long because its tests over real TLS sit beside it; the code alone is under 600 lines.
//!
//! Fake agents each behind a host of its own, over plain HTTP and over HTTPS, as on Railway,
//! where every agent is `https://<name>.up.railway.app` and a client keeps (or opens) one
//! connection per agent.
//!
//! A name like that does not resolve on a test machine, so each agent gets a loopback address
//! instead: on Linux the whole of `127.0.0.0/8` is local, so `127.1.0.1`, `127.1.0.2`, … are
//! distinct hosts for a client's connection pool (its key is scheme, host and port) that all
//! reach this process without DNS or `/etc/hosts`. The pool is pointed at them with
//! `AGENT_URL_TEMPLATE=https://{domain}:PORT` and agent rows whose domain is that address
//! ([`AgentHosts::host_for`]); the server tells agents apart by the address a connection was
//! made to, as Railway's edge does by name.
//!
//! HTTPS uses a certificate chain made at start: a root (written out by
//! [`AgentHosts::ca_pem`], for the client to trust explicitly), an intermediate, and one leaf
//! per agent address (an IP address SAN: a wildcard cannot name addresses). Production chains
//! are leaf + intermediate too, so a client verifies two signatures per handshake, as it would
//! against Railway. Handshakes, connections and connections open now are counted.
//!
//! The listeners bind `0.0.0.0` (the only way to accept on every loopback address at once) and
//! drop, unanswered, every connection that was not made to a loopback address.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::server::Sim;

/// Time a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Addresses handed out: the 254 usable last octets of each `127.A.B.0/24`, from `127.1.0.1`.
const PER_SUBNET: u32 = 254;

/// What the agent hosts have seen since they started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentHostStats {
    /// TCP connections accepted (plain and TLS).
    pub connections: u64,
    /// Connections open now (kept alive, or in use).
    pub open: u64,
    /// TLS handshakes completed.
    pub handshakes: u64,
    /// Of those, resumed sessions (no certificate sent or verified).
    pub resumed: u64,
    /// TLS handshakes that failed or timed out.
    pub handshake_failures: u64,
    /// Requests answered.
    pub requests: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    open: AtomicU64,
    handshakes: AtomicU64,
    resumed: AtomicU64,
    handshake_failures: AtomicU64,
    requests: AtomicU64,
}

/// Who is who: agent domains by address, and each address's TLS configuration.
#[derive(Default)]
struct Directory {
    domain_at: HashMap<Ipv4Addr, String>,
    address_of: HashMap<String, Ipv4Addr>,
    tls: HashMap<Ipv4Addr, Arc<rustls::ServerConfig>>,
}

/// The certificates' issuer and the one key every leaf shares (as a wildcard's hosts do).
struct Authority {
    root_pem: String,
    intermediate_der: CertificateDer<'static>,
    intermediate: Issuer<'static, KeyPair>,
    leaf_key: KeyPair,
    leaf_signing_key: Arc<dyn rustls::sign::SigningKey>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    sessions: Arc<dyn StoresServerSessions>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
}

struct Shared {
    sim: Sim,
    directory: Mutex<Directory>,
    authority: Authority,
    keep_alive: AtomicBool,
    /// Added before each answer: the round trip to an agent across the internet (ms).
    round_trip_ms: AtomicU64,
    counters: Counters,
    /// Health checks' arrivals (host, when), while recorded.
    arrivals: Mutex<Option<Vec<(Ipv4Addr, std::time::Instant)>>>,
    /// Hosts whose health answers are padded to this many bytes.
    oversized: Mutex<HashMap<Ipv4Addr, usize>>,
}

impl Shared {
    fn directory(&self) -> MutexGuard<'_, Directory> {
        self.directory.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Fake agents at addresses of their own (see the [module docs](self)). Stops when dropped.
pub struct AgentHosts {
    shared: Arc<Shared>,
    http_port: u16,
    https_port: u16,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for AgentHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentHosts")
            .field("http_port", &self.http_port)
            .field("https_port", &self.https_port)
            .finish_non_exhaustive()
    }
}

impl Drop for AgentHosts {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn tls_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("agent hosts TLS: {e}"))
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn ca_params(name: &str, path_length: Option<u8>) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(match path_length {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl Authority {
    fn new() -> io::Result<Self> {
        let root_key = KeyPair::generate().map_err(tls_error)?;
        let root_params = ca_params("railway-sim agents root", None);
        let root = root_params.self_signed(&root_key).map_err(tls_error)?;
        let root_issuer = Issuer::new(root_params, root_key);
        let intermediate_key = KeyPair::generate().map_err(tls_error)?;
        let intermediate_params = ca_params("railway-sim agents intermediate", Some(0));
        let intermediate = intermediate_params
            .signed_by(&intermediate_key, &root_issuer)
            .map_err(tls_error)?;
        let leaf_key = KeyPair::generate().map_err(tls_error)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let leaf_signing_key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                leaf_key.serialize_der(),
            )))
            .map_err(tls_error)?;
        Ok(Self {
            root_pem: pem("CERTIFICATE", root.der()),
            intermediate_der: intermediate.der().clone(),
            intermediate: Issuer::new(intermediate_params, intermediate_key),
            leaf_key,
            leaf_signing_key,
            provider,
            // One session cache for every host (a cache per host would hold 10,000 of them).
            sessions: ServerSessionMemoryCache::new(4096),
            // Stateless tickets besides (an assumption, not a documented fact of Railway's
            // edge: large TLS front ends issue them, and a cache of sessions cannot hold a
            // fleet's). A client that remembers a session per host resumes every handshake.
            ticketer: rustls::crypto::ring::Ticketer::new().map_err(tls_error)?,
        })
    }

    /// The server configuration of one address: its own leaf, the intermediate after it.
    fn server_config(&self, address: Ipv4Addr, serial: u64) -> io::Result<Arc<rustls::ServerConfig>> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, address.to_string());
        params.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(address))];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(SerialNumber::from(serial));
        let leaf = params
            .signed_by(&self.leaf_key, &self.intermediate)
            .map_err(tls_error)?;
        let certified = CertifiedKey::new(
            vec![leaf.der().clone(), self.intermediate_der.clone()],
            self.leaf_signing_key.clone(),
        );
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(OneCertificate(Arc::new(certified))));
        config.session_storage = self.sessions.clone();
        config.ticketer = self.ticketer.clone();
        Ok(Arc::new(config))
    }
}

#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The address of the `index`-th agent host: `127.1.0.1`, …, `127.1.0.254`, `127.1.1.1`, ….
pub(crate) fn address(index: u32) -> Ipv4Addr {
    let subnet = index / PER_SUBNET;
    Ipv4Addr::new(
        127,
        (1 + subnet / 256).min(255) as u8,
        (subnet % 256) as u8,
        (1 + index % PER_SUBNET) as u8,
    )
}

impl AgentHosts {
    pub(crate) async fn start(sim: Sim) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            sim,
            directory: Mutex::default(),
            authority: Authority::new()?,
            keep_alive: AtomicBool::new(true),
            round_trip_ms: AtomicU64::new(0),
            counters: Counters::default(),
            arrivals: Mutex::default(),
            oversized: Mutex::default(),
        });
        let mut tasks = Vec::new();
        let mut ports = Vec::new();
        for tls in [false, true] {
            let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], 0))).await?;
            ports.push(listener.local_addr()?.port());
            let (tx, rx) = mpsc::channel(1024);
            tasks.push(tokio::spawn(accept_loop(listener, tls, shared.clone(), tx)));
            let app = router(shared.clone()).into_make_service_with_connect_info::<Dialed>();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(Accepted { rx }, app).await {
                    tracing::error!(error = %e, "agent hosts stopped");
                }
            }));
        }
        Ok(Self {
            shared,
            http_port: ports[0],
            https_port: ports[1],
            tasks,
        })
    }

    /// The host (a loopback address) that serves the agent behind `domain`, made (with its
    /// certificate) on the first call. Put it in the agent's row as its domain.
    pub fn host_for(&self, domain: &str) -> io::Result<String> {
        let mut directory = self.shared.directory();
        if let Some(address) = directory.address_of.get(domain) {
            return Ok(address.to_string());
        }
        let index = directory.address_of.len() as u32;
        let address = address(index);
        let config = self
            .shared
            .authority
            .server_config(address, u64::from(index) + 1)?;
        directory.tls.insert(address, config);
        directory.domain_at.insert(address, domain.to_string());
        directory.address_of.insert(domain.to_string(), address);
        Ok(address.to_string())
    }

    /// `AGENT_URL_TEMPLATE` for plain HTTP: `http://{domain}:PORT`.
    pub fn http_url_template(&self) -> String {
        format!("http://{{domain}}:{}", self.http_port)
    }

    /// `AGENT_URL_TEMPLATE` for HTTPS: `https://{domain}:PORT`.
    pub fn https_url_template(&self) -> String {
        format!("https://{{domain}}:{}", self.https_port)
    }

    /// The root certificate (PEM) the HTTPS hosts chain to: what a client must trust.
    pub fn ca_pem(&self) -> &str {
        &self.shared.authority.root_pem
    }

    /// Whether connections stay open after an answer (on by default). Off, every answer says
    /// `Connection: close`: each request then costs a new connection, and a handshake.
    pub fn set_keep_alive(&self, keep_alive: bool) {
        self.shared.keep_alive.store(keep_alive, Ordering::SeqCst);
    }

    /// Time added before each answer (none by default): an agent on Railway is a round trip
    /// across the internet away (tens of milliseconds), not a loopback hop.
    pub fn set_round_trip(&self, round_trip: Duration) {
        self.shared
            .round_trip_ms
            .store(round_trip.as_millis() as u64, Ordering::SeqCst);
    }

    /// Starts recording when each health check arrives, at which host (anew: what was
    /// recorded before is dropped). Off by default: a long run would hold every arrival.
    pub fn record_arrivals(&self) {
        *self.shared.arrivals.lock().unwrap_or_else(|p| p.into_inner()) = Some(Vec::new());
    }

    /// The health checks' arrivals recorded so far: the host, and when.
    pub fn arrivals(&self) -> Vec<(String, std::time::Instant)> {
        self.shared
            .arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flatten()
            .map(|(host, at)| (host.to_string(), *at))
            .collect()
    }

    /// The agent at `host` answers its health checks `200` with a body of `bytes` bytes (valid
    /// JSON, `ready: true`, padded): an agent, or something in front of it, gone wrong. A
    /// client must not read it whole.
    pub fn answer_oversized(&self, host: &str, bytes: usize) {
        if let Ok(address) = host.parse::<Ipv4Addr>() {
            self.shared
                .oversized
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(address, bytes);
        }
    }

    /// Counters since start.
    pub fn stats(&self) -> AgentHostStats {
        let c = &self.shared.counters;
        AgentHostStats {
            connections: c.connections.load(Ordering::SeqCst),
            open: c.open.load(Ordering::SeqCst),
            handshakes: c.handshakes.load(Ordering::SeqCst),
            resumed: c.resumed.load(Ordering::SeqCst),
            handshake_failures: c.handshake_failures.load(Ordering::SeqCst),
            requests: c.requests.load(Ordering::SeqCst),
        }
    }
}

/// The address a connection was made to: which agent it is for.
#[derive(Debug, Clone, Copy)]
struct Dialed(Ipv4Addr);

impl Connected<IncomingStream<'_, Accepted>> for Dialed {
    fn connect_info(stream: IncomingStream<'_, Accepted>) -> Self {
        *stream.remote_addr()
    }
}

type Stream = Box<dyn Io>;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connections the accept loop has made ready (TLS already shaken hands), for `axum::serve`.
struct Accepted {
    rx: mpsc::Receiver<(Stream, Dialed)>,
}

impl axum::serve::Listener for Accepted {
    type Io = Stream;
    type Addr = Dialed;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(ready) => ready,
            // The accept loop ended: nothing will come any more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Dialed(Ipv4Addr::UNSPECIFIED))
    }
}

/// Accepts connections; TLS handshakes run on tasks of their own, so one slow client does not
/// hold up the others.
async fn accept_loop(
    listener: TcpListener,
    tls: bool,
    shared: Arc<Shared>,
    tx: mpsc::Sender<(Stream, Dialed)>,
) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "agent hosts: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(SocketAddr::V4(local)) = tcp.local_addr() else {
            continue;
        };
        if !local.ip().is_loopback() {
            continue;
        }
        let _ = tcp.set_nodelay(true);
        shared.counters.connections.fetch_add(1, Ordering::SeqCst);
        let counted = Counted::new(tcp, shared.clone());
        let dialed = Dialed(*local.ip());
        if !tls {
            if tx.send((Box::new(counted), dialed)).await.is_err() {
                return;
            }
            continue;
        }
        let config = shared.directory().tls.get(local.ip()).cloned();
        let Some(config) = config else {
            // No agent there: no certificate either.
            continue;
        };
        let (ready, shared) = (tx.clone(), shared.clone());
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(counted)).await {
                Ok(Ok(stream)) => {
                    shared.counters.handshakes.fetch_add(1, Ordering::SeqCst);
                    if stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                        shared.counters.resumed.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = ready.send((Box::new(stream), dialed)).await;
                }
                Ok(Err(e)) => {
                    shared.counters.handshake_failures.fetch_add(1, Ordering::SeqCst);
                    tracing::debug!(error = %e, "agent hosts: TLS handshake failed");
                }
                Err(_) => {
                    shared.counters.handshake_failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
}

/// A connection counted as open until it is dropped.
struct Counted {
    tcp: TcpStream,
    shared: Arc<Shared>,
}

impl Counted {
    fn new(tcp: TcpStream, shared: Arc<Shared>) -> Self {
        shared.counters.open.fetch_add(1, Ordering::SeqCst);
        Self { tcp, shared }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.shared.counters.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/pool/health", get(health))
        .route("/pool/provision", post(provision))
        .route("/convos/status", get(status))
        .route("/convos/reset", post(reset))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not found") })
        .with_state(shared)
}

/// Waits the round trip set with [`AgentHosts::set_round_trip`].
async fn round_trip(shared: &Shared) {
    let ms = shared.round_trip_ms.load(Ordering::SeqCst);
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// The domain of the agent at `dialed` (`None`: nobody is served there).
fn agent_domain(shared: &Shared, dialed: Dialed) -> Option<String> {
    shared.counters.requests.fetch_add(1, Ordering::SeqCst);
    shared.directory().domain_at.get(&dialed.0).cloned()
}

/// Railway's answer for a host that serves nothing.
fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "Application not found").into_response()
}

fn finish(shared: &Shared, mut response: Response) -> Response {
    if !shared.keep_alive.load(Ordering::SeqCst) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn health(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(dialed): ConnectInfo<Dialed>,
    headers: HeaderMap,
) -> Response {
    if let Some(arrivals) = shared.arrivals.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        arrivals.push((dialed.0, std::time::Instant::now()));
    }
    round_trip(&shared).await;
    let oversized = shared
        .oversized
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&dialed.0)
        .copied();
    let response = match (agent_domain(&shared, dialed), oversized) {
        (Some(_), Some(bytes)) => {
            let padding = "x".repeat(bytes.saturating_sub(40));
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                format!("{{\"ready\":true,\"padding\":\"{padding}\"}}"),
            )
                .into_response()
        }
        (Some(domain), None) => {
            crate::server::agent_health(State(shared.sim.clone()), Path(domain), headers).await
        }
        (None, _) => not_found(),
    };
    finish(&shared, response)
}

async fn provision(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(dialed): ConnectInfo<Dialed>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let response = match agent_domain(&shared, dialed) {
        Some(domain) => {
            crate::server::agent_provision(State(shared.sim.clone()), Path(domain), headers, body).await
        }
        None => not_found(),
    };
    finish(&shared, response)
}

async fn status(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(dialed): ConnectInfo<Dialed>,
    headers: HeaderMap,
) -> Response {
    let response = match agent_domain(&shared, dialed) {
        Some(domain) => crate::server::convos_status(State(shared.sim.clone()), Path(domain), headers).await,
        None => not_found(),
    };
    finish(&shared, response)
}

async fn reset(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(dialed): ConnectInfo<Dialed>,
    headers: HeaderMap,
) -> Response {
    let response = match agent_domain(&shared, dialed) {
        Some(domain) => crate::server::convos_reset(State(shared.sim.clone()), Path(domain), headers).await,
        None => not_found(),
    };
    finish(&shared, response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One `GET /pool/health` over TLS to `address`, verifying the server as `name`; the status
    /// line, or the TLS error.
    async fn https_health(port: u16, address: &str, name: &str, ca_pem: &str) -> Result<String, String> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(cert.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
        let tcp = TcpStream::connect((address, port))
            .await
            .map_err(|e| e.to_string())?;
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(
            format!("GET /pool/health HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut answer = String::new();
        let _ = tls.read_to_string(&mut answer).await;
        Ok(answer.lines().next().unwrap_or_default().to_string())
    }

    #[tokio::test]
    async fn each_agent_is_a_host_of_its_own_with_its_own_certificate() {
        let sim = crate::start(crate::SimConfig {
            agents: crate::AgentBehaviour {
                ready_after: Duration::ZERO,
                ..crate::AgentBehaviour::default()
            },
            deploy: crate::DeployTimings::instant(),
            ..crate::SimConfig::quick()
        })
        .await
        .unwrap();
        let seeded = sim.seed_projects(2, "staging", "ghcr.io/xmtplabs/convos-agent:staging");
        let hosts = sim.serve_agent_hosts().await.unwrap();
        let a = hosts.host_for(&seeded[0].domain).unwrap();
        let b = hosts.host_for(&seeded[1].domain).unwrap();
        assert_eq!((a.as_str(), b.as_str()), ("127.1.0.1", "127.1.0.2"));
        assert_eq!(
            hosts.host_for(&seeded[0].domain).unwrap(),
            a,
            "one host per agent"
        );
        assert!(sim.crash_service(&seeded[1].service_id));
        let port: u16 = hosts
            .https_url_template()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();

        // Each host answers for its own agent, under its own name.
        assert_eq!(
            https_health(port, &a, &a, hosts.ca_pem()).await.unwrap(),
            "HTTP/1.1 200 OK"
        );
        assert_eq!(
            https_health(port, &b, &b, hosts.ca_pem()).await.unwrap(),
            "HTTP/1.1 502 Bad Gateway"
        );
        // The certificate of one host is no good for another, and nothing is trusted without
        // the root.
        let wrong_name = https_health(port, &b, &a, hosts.ca_pem()).await.unwrap_err();
        assert!(wrong_name.contains("certificate"), "{wrong_name}");
        let other_ca = AgentHosts::start(sim.sim.clone()).await.unwrap();
        let untrusted = https_health(port, &a, &a, other_ca.ca_pem()).await.unwrap_err();
        assert!(untrusted.contains("certificate"), "{untrusted}");

        // Plain HTTP on the other port, the same agents.
        let plain_port: u16 = hosts
            .http_url_template()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let mut tcp = TcpStream::connect((a.as_str(), plain_port)).await.unwrap();
        tcp.write_all(b"GET /pool/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer).await;
        assert!(
            answer.starts_with("HTTP/1.1 200 OK") && answer.contains("\"ready\":true"),
            "{answer}"
        );

        // The server sees a refused handshake when the client's alert arrives.
        let mut stats = hosts.stats();
        for _ in 0..100 {
            if stats.handshake_failures == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            stats = hosts.stats();
        }
        assert_eq!(stats.connections, 5);
        assert_eq!(stats.handshakes, 2, "{stats:?}");
        assert_eq!(stats.handshake_failures, 2, "{stats:?}");
        assert_eq!(stats.requests, 3, "{stats:?}");
    }

    #[test]
    fn addresses_are_distinct_loopback_hosts_without_network_or_broadcast_octets() {
        assert_eq!(address(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(address(253), Ipv4Addr::new(127, 1, 0, 254));
        assert_eq!(address(254), Ipv4Addr::new(127, 1, 1, 1));
        let all: std::collections::HashSet<Ipv4Addr> = (0..20_000).map(address).collect();
        assert_eq!(all.len(), 20_000);
        assert!(
            all.iter()
                .all(|a| a.is_loopback() && a.octets()[3] != 0 && a.octets()[3] != 255)
        );
    }
}
