//! TLS to PostgreSQL: rustls with the ring provider behind tokio-postgres' `MakeTlsConnect`.
//!
//! The semantics are libpq's. `prefer` and `require` encrypt without checking the certificate
//! (what libpq does: they protect against eavesdroppers, not against an active attacker);
//! `verify-ca` checks the chain against `sslrootcert` only; `verify-full` checks the chain
//! against the webpki roots plus `sslrootcert`, and the host name. Whether TLS is attempted at
//! all, and whether plain is accepted when the server refuses it, is tokio-postgres' own
//! `SslMode` (set by [`crate::StoreConfig`]); this module only decides what a handshake accepts.
//!
//! The adapter is written here rather than taken from `tokio-postgres-rustls` because that
//! crate pulls in an X.509 parser (for SCRAM channel binding) and a second `const-oid`; the
//! adapter is a few dozen lines over the `tokio-rustls` already in the tree. The price is that
//! no channel binding is offered: SCRAM falls back to plain `SCRAM-SHA-256`, as with `NoTls`.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::{SslMode, StoreError};

/// The ALPN protocol PostgreSQL 17 registers for itself; older servers ignore it, and it is
/// what lets `sslnegotiation=direct` work against servers that require it.
const POSTGRES_ALPN: &[u8] = b"postgresql";

/// What DATABASE_URL asks of TLS: the mode and the optional extra trust anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    /// `sslmode`.
    pub(crate) mode: SslMode,
    /// `sslrootcert`: a PEM file of certificates to trust.
    pub(crate) root_cert: Option<PathBuf>,
}

/// What a handshake checks about the server's certificate.
enum Verification {
    /// Nothing about the certificate itself; the handshake's signatures still must verify.
    Unverified,
    /// The chain up to these roots, not the host name.
    Chain(Arc<RootCertStore>),
    /// The chain up to these roots and the host name.
    Full(Arc<RootCertStore>),
}

impl TlsSettings {
    fn verification(&self) -> Result<Verification, StoreError> {
        Ok(match (self.mode, &self.root_cert) {
            (SslMode::Disable | SslMode::Allow | SslMode::Prefer, _) | (SslMode::Require, None) => {
                Verification::Unverified
            }
            // libpq: "if a root CA file exists, sslmode=require behaves like verify-ca".
            (SslMode::Require | SslMode::VerifyCa, Some(path)) => {
                Verification::Chain(Arc::new(roots_from_file(RootCertStore::empty(), path)?))
            }
            // Without a host-name check, the public roots would accept any site's certificate
            // for the database; verify-ca is only meaningful against a private CA.
            (SslMode::VerifyCa, None) => {
                return Err(StoreError::Config(
                    "DATABASE_URL: sslmode=verify-ca needs sslrootcert=PATH (the CA to trust); \
                     use sslmode=verify-full to verify against the public roots"
                        .into(),
                ));
            }
            (SslMode::VerifyFull, root_cert) => {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                if let Some(path) = root_cert {
                    roots = roots_from_file(roots, path)?;
                }
                Verification::Full(Arc::new(roots))
            }
        })
    }

    /// The connector for these settings. Reads `sslrootcert`, so a missing or malformed file
    /// is reported here, before any connection is attempted.
    pub(crate) fn connector(&self) -> Result<PostgresTls, StoreError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let setup = |e: rustls::Error| StoreError::Config(format!("TLS setup: {e}"));
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(setup)?;
        let mut config = match self.verification()? {
            Verification::Full(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
            Verification::Chain(roots) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoNameCheck::new(&provider, Some(roots))))
                .with_no_client_auth(),
            Verification::Unverified => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoNameCheck::new(&provider, None)))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![POSTGRES_ALPN.to_vec()];
        Ok(PostgresTls {
            config: Arc::new(config),
        })
    }
}

fn roots_from_file(mut roots: RootCertStore, path: &Path) -> Result<RootCertStore, StoreError> {
    let bad = |e: &dyn std::fmt::Display| {
        StoreError::Config(format!("DATABASE_URL: sslrootcert {}: {e}", path.display()))
    };
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
        roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad(&"holds no PEM certificate"));
    }
    Ok(roots)
}

/// The certificate check of `prefer`, `require` and `verify-ca`: never the host name; the
/// chain only when roots are given. The handshake signatures are always verified with the
/// provider's algorithms, so the peer must hold the key of the certificate it presents.
#[derive(Debug)]
struct NoNameCheck {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl NoNameCheck {
    fn new(provider: &CryptoProvider, roots: Option<Arc<RootCertStore>>) -> Self {
        Self {
            roots,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for NoNameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(&cert, roots, intermediates, now, self.algorithms.all)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// tokio-postgres' TLS connector over rustls. Cheap to clone: the configuration is shared.
#[derive(Clone)]
pub(crate) struct PostgresTls {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for PostgresTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PostgresTlsStream<S>;
    type TlsConnect = PostgresTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PostgresTlsConnect, io::Error> {
        // tokio-postgres asks for a connector before it knows whether TLS will be used; over a
        // Unix socket the domain is empty and TLS never happens, so a bad name only fails a
        // handshake that is actually attempted.
        let server_name = ServerName::try_from(domain.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{domain:?} is not a TLS server name: {e}"),
            )
        });
        Ok(PostgresTlsConnect {
            config: self.config.clone(),
            server_name,
        })
    }
}

/// One pending handshake, for one host.
pub(crate) struct PostgresTlsConnect {
    config: Arc<ClientConfig>,
    server_name: Result<ServerName<'static>, io::Error>,
}

impl<S> TlsConnect<S> for PostgresTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PostgresTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PostgresTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let server_name = self.server_name?;
            let stream = tokio_rustls::TlsConnector::from(self.config)
                .connect(server_name, stream)
                .await?;
            Ok(PostgresTlsStream(stream))
        })
    }
}

/// An encrypted connection to PostgreSQL.
pub(crate) struct PostgresTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S> TlsStream for PostgresTlsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn channel_binding(&self) -> ChannelBinding {
        // See the module docs: no tls-server-end-point without parsing the certificate.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PostgresTlsStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PostgresTlsStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: SslMode, root_cert: Option<&str>) -> TlsSettings {
        TlsSettings {
            mode,
            root_cert: root_cert.map(PathBuf::from),
        }
    }

    #[test]
    fn verify_ca_without_a_root_certificate_is_refused_before_connecting() {
        let Err(err) = settings(SslMode::VerifyCa, None).connector() else {
            panic!("verify-ca without sslrootcert must be refused");
        };
        assert!(matches!(err, StoreError::Config(_)), "{err:?}");
        assert!(err.to_string().contains("sslrootcert"), "{err}");
    }

    #[test]
    fn an_unreadable_root_certificate_names_the_parameter_and_the_path() {
        let Err(err) = settings(SslMode::VerifyFull, Some("/nonexistent/root.pem")).connector() else {
            panic!("a missing sslrootcert must be refused");
        };
        let message = err.to_string();
        assert!(message.contains("sslrootcert /nonexistent/root.pem"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn every_mode_without_extra_trust_except_verify_ca_builds_a_connector() {
        for mode in [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyFull,
        ] {
            assert!(settings(mode, None).connector().is_ok(), "{mode}");
        }
    }
}
