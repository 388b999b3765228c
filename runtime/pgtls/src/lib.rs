//! PostgreSQL connections as libpq's connection strings describe them, TLS included.
//!
//! tokio-postgres knows `sslmode` `disable`, `prefer` and `require` and leaves certificates to
//! the TLS connector it is given. Operators write libpq's connection strings, where `sslmode`
//! also takes `allow`, `verify-ca` and `verify-full`, and `sslrootcert` names the CA file (or
//! `system`). This crate reads both forms (`host=… sslmode=verify-full` and
//! `postgres://…?sslmode=verify-full`), takes those two settings out, and gives tokio-postgres
//! a rustls connector that behaves as libpq does:
//!
//! | `sslmode` | TLS | certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `allow`, `prefer` (the default) | when the server offers it | no |
//! | `require` | always | no; against `sslrootcert` when it is given (as libpq does) |
//! | `verify-ca` | always | chain to `sslrootcert` (or the system roots) |
//! | `verify-full` | always | chain and host name |
//!
//! Without `sslrootcert` (or with `sslrootcert=system`), `verify-*` trusts the Mozilla roots
//! that reqwest's rustls trusts too. Channel binding is not offered (`SCRAM-SHA-256` without
//! `-PLUS`).

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, Socket};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Why a connection string cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PgTlsError {
    #[error("not a PostgreSQL connection string: {0}")]
    Dsn(String),
    #[error("sslrootcert {path}: {message}")]
    RootCert { path: PathBuf, message: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("{}", error_text(.0))]
    Connect(#[from] tokio_postgres::Error),
}

/// What went wrong, in full: tokio-postgres displays only "db error" or "error performing TLS
/// handshake" and keeps the server's message (with its SQLSTATE) or the TLS cause underneath.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A driven connection: spawn it (it ends when its client is dropped).
pub type Connection = tokio_postgres::Connection<Socket, TlsStream<Socket>>;

/// A parsed connection string and the TLS its `sslmode` asks for.
#[derive(Clone)]
pub struct PgTarget {
    /// What tokio-postgres connects with (`sslmode` already set; read it for host, user, …).
    pub config: Config,
    tls: MakeTls,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("hosts", &self.config.get_hosts())
            .field("ssl_mode", &self.config.get_ssl_mode())
            .finish_non_exhaustive()
    }
}

impl PgTarget {
    /// Parses `dsn` (key=value or URL form) with libpq's `sslmode` and `sslrootcert`.
    pub fn parse(dsn: &str) -> Result<PgTarget, PgTlsError> {
        let (rest, ssl) = if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
            split_url(dsn)
        } else {
            split_keywords(dsn)?
        };
        let mut config = Config::from_str(&rest).map_err(|e| PgTlsError::Dsn(e.to_string()))?;
        let mode = ssl.mode.as_deref().unwrap_or("prefer");
        let (ssl_mode, verify) = match mode {
            "disable" => (SslMode::Disable, Verify::Nothing),
            "allow" | "prefer" => (SslMode::Prefer, Verify::Nothing),
            "require" if ssl.root_cert.is_some() => (SslMode::Require, Verify::Chain),
            "require" => (SslMode::Require, Verify::Nothing),
            "verify-ca" => (SslMode::Require, Verify::Chain),
            "verify-full" => (SslMode::Require, Verify::ChainAndName),
            other => {
                return Err(PgTlsError::Dsn(format!(
                    "unknown sslmode `{other}`: use disable, allow, prefer, require, verify-ca or verify-full"
                )));
            }
        };
        config.ssl_mode(ssl_mode);
        let tls = MakeTls::new(verify, ssl.root_cert.as_deref())?;
        Ok(PgTarget { config, tls })
    }

    /// Connects (TLS as the connection string says).
    pub async fn connect(&self) -> Result<(Client, Connection), tokio_postgres::Error> {
        self.config.connect(self.tls.clone()).await
    }
}

/// [`PgTarget::parse`] then [`PgTarget::connect`].
pub async fn connect(dsn: &str) -> Result<(Client, Connection), PgTlsError> {
    Ok(PgTarget::parse(dsn)?.connect().await?)
}

/// libpq's TLS settings, taken out of a connection string.
#[derive(Default)]
struct Ssl {
    mode: Option<String>,
    root_cert: Option<String>,
}

impl Ssl {
    /// Takes `key = value` when it is one of ours; `false` leaves it in the string.
    fn take(&mut self, key: &str, value: &str) -> bool {
        match key {
            "sslmode" => self.mode = Some(value.to_owned()),
            "sslrootcert" => self.root_cert = Some(value.to_owned()),
            _ => return false,
        }
        true
    }
}

/// `postgres://…?a=b&sslmode=…`: the URL without our query parameters.
fn split_url(dsn: &str) -> (String, Ssl) {
    let mut ssl = Ssl::default();
    let Some((base, query)) = dsn.split_once('?') else {
        return (dsn.to_owned(), ssl);
    };
    let mut kept = url::form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if !ssl.take(&k, &v) {
            kept.append_pair(&k, &v);
            any = true;
        }
    }
    let rest = if any {
        format!("{base}?{}", kept.finish())
    } else {
        base.to_owned()
    };
    (rest, ssl)
}

/// `host=x sslmode='verify-full'`: libpq's keyword/value syntax (values optionally in single
/// quotes, `\` escaping the next character), without our keywords.
fn split_keywords(dsn: &str) -> Result<(String, Ssl), PgTlsError> {
    let mut ssl = Ssl::default();
    let mut kept = Vec::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(PgTlsError::Dsn(format!(
                "`{key}` has no `=value` (write `key=value` pairs, or a postgres:// URL)"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(PgTlsError::Dsn(format!(
                            "the quoted value of `{key}` is not closed"
                        )));
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        if !ssl.take(&key, &value) {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Ok((kept.join(" "), ssl))
}

/// What of the server's certificate is checked.
#[derive(Clone, Copy, Debug)]
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

/// tokio-postgres's TLS connector over rustls (ring), one config per target.
#[derive(Clone)]
struct MakeTls {
    config: Arc<ClientConfig>,
}

impl MakeTls {
    fn new(verify: Verify, root_cert: Option<&str>) -> Result<MakeTls, PgTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match verify {
            Verify::Nothing => Arc::new(AnyCert(provider.clone())),
            Verify::Chain | Verify::ChainAndName => {
                let roots = roots(root_cert)?;
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| PgTlsError::Tls(e.to_string()))?;
                match verify {
                    Verify::Chain => Arc::new(ChainOnly(webpki)),
                    _ => webpki,
                }
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PgTlsError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeTls {
            config: Arc::new(config),
        })
    }
}

/// The CA certificates of `sslrootcert` (a PEM file), or the system's for none or `system`.
fn roots(root_cert: Option<&str>) -> Result<RootCertStore, PgTlsError> {
    let mut roots = RootCertStore::empty();
    match root_cert {
        None | Some("system") => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let err = |message: String| PgTlsError::RootCert {
                path: PathBuf::from(path),
                message,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| err(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(e.to_string()))?;
            if certs.is_empty() {
                return Err(err("holds no PEM certificate".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| err(e.to_string()))?;
            }
        }
    }
    Ok(roots)
}

/// `sslmode=prefer`/`require` without a root certificate: encrypted, not authenticated (as
/// libpq). The handshake's signatures are still checked against the certificate presented.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl MakeTlsConnect<Socket> for MakeTls {
    type Stream = TlsStream<Socket>;
    type TlsConnect = Connector;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Connector, io::Error> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Connector {
            config: self.config.clone(),
            name,
        })
    }
}

/// One handshake with one server.
pub struct Connector {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for Connector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(TlsStream(tls))
        })
    }
}

/// A TLS session with a PostgreSQL server.
pub struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_keywords_are_taken_out_of_both_forms() {
        let (rest, ssl) = split_keywords(
            "host=db.example.com  sslmode = verify-full sslrootcert='/etc/ca dir/ca.pem' password='it\\'s'",
        )
        .unwrap();
        assert_eq!(rest, "host='db.example.com' password='it\\'s'");
        assert_eq!(ssl.mode.as_deref(), Some("verify-full"));
        assert_eq!(ssl.root_cert.as_deref(), Some("/etc/ca dir/ca.pem"));
        let c = Config::from_str(&rest).unwrap();
        assert_eq!(c.get_password(), Some(&b"it's"[..]));

        let (rest, ssl) = split_url(
            "postgres://u@h:5/db?sslmode=verify-ca&application_name=x&sslrootcert=%2Fca.pem",
        );
        assert_eq!(rest, "postgres://u@h:5/db?application_name=x");
        assert_eq!(ssl.mode.as_deref(), Some("verify-ca"));
        assert_eq!(ssl.root_cert.as_deref(), Some("/ca.pem"));
        let (rest, _) = split_url("postgresql://u@h/db?sslmode=disable");
        assert_eq!(rest, "postgresql://u@h/db");
    }

    #[test]
    fn sslmode_maps_to_what_tokio_postgres_knows() {
        for (mode, want) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Prefer),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::Require),
            ("verify-full", SslMode::Require),
        ] {
            let t = PgTarget::parse(&format!("host=x user=u sslmode={mode}")).unwrap();
            assert_eq!(t.config.get_ssl_mode(), want, "{mode}");
        }
        assert_eq!(
            PgTarget::parse("host=x").unwrap().config.get_ssl_mode(),
            SslMode::Prefer
        );
        let e = PgTarget::parse("host=x sslmode=verify").unwrap_err();
        assert!(e.to_string().contains("unknown sslmode `verify`"), "{e}");
        let e = PgTarget::parse("host=x sslmode=require sslrootcert=/nonexistent.pem").unwrap_err();
        assert!(
            e.to_string().starts_with("sslrootcert /nonexistent.pem:"),
            "{e}"
        );
        let e = PgTarget::parse("host=x dbname").unwrap_err();
        assert!(e.to_string().contains("`dbname` has no `=value`"), "{e}");
    }
}
