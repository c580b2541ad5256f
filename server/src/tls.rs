//! TLS on the gRPC port and the HTTP listener, with rustls: the certificate, its key and
//! (for mutual TLS) the CA client certificates must chain to, read from files. The files are
//! read again when they change (looked at every second) or on SIGHUP; a connection keeps the
//! certificate it was opened with, new ones get the new one, and nothing is dropped. A reload
//! that fails (a file half written, a key that does not match) keeps the last good one.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How often the files are looked at for a change.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Time a client gets to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections handshaken and not yet taken by the server, at most.
const ACCEPT_BACKLOG: usize = 256;

/// `[tls]`: the files of the server's certificate and key, and of the CA client certificates
/// must chain to (mutual TLS) when set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// PEM file of its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM file of the CA certificates that sign client certificates; when set, every gRPC
    /// client must present one (mutual TLS). The HTTP listener does not ask for one: carriers'
    /// callbacks come from vendors, which sign them instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

/// Which listener a configuration is for: they differ in the protocol they announce (ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The gRPC port: HTTP/2.
    Grpc,
    /// The HTTP listener (carrier callbacks): HTTP/1.1.
    Http,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the files into one server configuration per protocol; the error names the file and
/// what is wrong with it. Client certificates are asked for on the gRPC port only: the HTTP
/// listener takes carriers' callbacks, which vendors sign instead.
fn read_configs(settings: &TlsSettings) -> Result<[Arc<ServerConfig>; 2], String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.cert)
        .map_err(|e| format!("tls.cert {}: {e}", settings.cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert {}: {e}", settings.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.cert {}: no PEM certificate in it",
            settings.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .map_err(|e| format!("tls.key {}: {e}", settings.key.display()))?;
    let builder = || {
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))
    };
    let grpc = match &settings.client_ca {
        Some(path) => builder()?.with_client_cert_verifier(client_verifier(path)?),
        None => builder()?.with_no_client_auth(),
    };
    let finish = |builder: rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>,
                  protocol: &[u8]| {
        let mut config = builder
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| format!("tls.cert and tls.key do not make a certificate: {e}"))?;
        config.alpn_protocols = vec![protocol.to_vec()];
        Ok::<_, String>(Arc::new(config))
    };
    Ok([
        finish(grpc, b"h2")?,
        finish(builder()?.with_no_client_auth(), b"http/1.1")?,
    ])
}

/// The verifier of client certificates signed by the CAs in `path`.
fn client_verifier(
    path: &Path,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("tls.client_ca {}: {e}", path.display()))?;
    for ca in cas {
        let ca = ca.map_err(|e| format!("tls.client_ca {}: {e}", path.display()))?;
        roots
            .add(ca)
            .map_err(|e| format!("tls.client_ca {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "tls.client_ca {}: no PEM certificate in it",
            path.display()
        ));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("tls.client_ca {}: {e}", path.display()))
}

/// When each file last changed, and its length: a change of either means a new file.
type Stamps = Vec<Option<(SystemTime, u64)>>;

fn stamps(settings: &TlsSettings) -> Stamps {
    let stamp = |path: &Path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    let mut all = vec![stamp(&settings.cert), stamp(&settings.key)];
    if let Some(ca) = &settings.client_ca {
        all.push(stamp(ca));
    }
    all
}

/// The server's TLS configuration, read again when its files change.
pub struct ReloadingTls {
    settings: TlsSettings,
    configs: RwLock<[Arc<ServerConfig>; 2]>,
    /// The files as last read (or last found unreadable, so a bad file is reported once).
    seen: Mutex<Stamps>,
}

impl ReloadingTls {
    /// Reads the files; an error names the file and what is wrong.
    pub fn load(settings: &TlsSettings) -> Result<Arc<ReloadingTls>, String> {
        let seen = stamps(settings);
        let configs = read_configs(settings)?;
        Ok(Arc::new(ReloadingTls {
            settings: settings.clone(),
            configs: RwLock::new(configs),
            seen: Mutex::new(seen),
        }))
    }

    /// Whether clients must present a certificate.
    pub fn is_mutual(&self) -> bool {
        self.settings.client_ca.is_some()
    }

    /// What a new connection on `protocol`'s listener is handshaken with.
    fn acceptor(&self, protocol: Protocol) -> TlsAcceptor {
        let configs = self.configs.read().unwrap_or_else(PoisonError::into_inner);
        let index = match protocol {
            Protocol::Grpc => 0,
            Protocol::Http => 1,
        };
        TlsAcceptor::from(Arc::clone(&configs[index]))
    }

    /// Reads the files again; on failure the configuration in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let now_seen = stamps(&self.settings);
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = now_seen;
        let configs = read_configs(&self.settings)?;
        *self.configs.write().unwrap_or_else(PoisonError::into_inner) = configs;
        Ok(())
    }

    /// Reloads when a file changed since it was last read.
    fn reload_if_changed(&self) {
        let changed =
            *self.seen.lock().unwrap_or_else(PoisonError::into_inner) != stamps(&self.settings);
        if changed {
            self.reload_and_log("the certificate files changed");
        }
    }

    fn reload_and_log(&self, why: &str) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert = %self.settings.cert.display(),
                "{why}: TLS certificate reloaded; new connections use it, open ones keep theirs"
            ),
            Err(error) => tracing::error!(
                %error,
                "{why}, but reading them failed: the previous TLS certificate stays in use"
            ),
        }
    }

    /// Reloads on SIGHUP and when the files change, until `shutdown` turns true.
    pub fn watch(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let tls = Arc::clone(self);
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let hangup_received = async {
                    match hangup.as_mut() {
                        Some(signal) => {
                            signal.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup_received = std::future::pending::<()>();
                tokio::select! {
                    _ = hangup_received => tls.reload_and_log("SIGHUP"),
                    _ = tokio::time::sleep(WATCH_EVERY) => tls.reload_if_changed(),
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                }
            }
        });
    }
}

/// A client connection after its TLS handshake.
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    remote: SocketAddr,
}

/// What the server knows of a TLS connection's peer.
#[derive(Debug, Clone)]
pub struct TlsConnectInfo {
    /// The client's address.
    pub remote_addr: SocketAddr,
}

impl tonic::transport::server::Connected for TlsConnection {
    type ConnectInfo = TlsConnectInfo;

    fn connect_info(&self) -> TlsConnectInfo {
        TlsConnectInfo {
            remote_addr: self.remote,
        }
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The connections of a listener, each handshaken on a task of its own (a slow or broken
/// client holds up no other): a stream for tonic, a listener for axum.
pub struct TlsIncoming {
    connections: mpsc::Receiver<TlsConnection>,
    local: SocketAddr,
}

impl TlsIncoming {
    /// Accepts on `listener` and handshakes with the current configuration for `protocol`
    /// until the returned value is dropped.
    pub fn new(
        listener: TcpListener,
        tls: Arc<ReloadingTls>,
        protocol: Protocol,
    ) -> io::Result<TlsIncoming> {
        let local = listener.local_addr()?;
        let (sender, connections) = mpsc::channel(ACCEPT_BACKLOG);
        tokio::spawn(async move {
            loop {
                let (tcp, remote) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            // Out of file descriptors and the like: wait, then go on.
                            tracing::warn!(%error, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = sender.closed() => return,
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = tls.acceptor(protocol);
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send(TlsConnection { stream, remote }).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%remote, %error, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsIncoming { connections, local })
    }
}

impl tokio_stream::Stream for TlsIncoming {
    type Item = io::Result<TlsConnection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx).map(|next| next.map(Ok))
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsConnection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TlsConnection, SocketAddr) {
        match self.connections.recv().await {
            Some(connection) => {
                let remote = connection.remote;
                (connection, remote)
            }
            // The accept task ends only when this is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsSettings {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let settings = TlsSettings {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
            client_ca: None,
        };
        std::fs::write(&settings.cert, cert.pem()).unwrap();
        std::fs::write(&settings.key, key.serialize_pem()).unwrap();
        settings
    }

    #[test]
    fn bad_files_are_named_and_a_failed_reload_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let settings = write_pair(dir.path(), "server");
        let tls = ReloadingTls::load(&settings).unwrap();
        assert!(!tls.is_mutual());
        std::fs::write(&settings.key, "not a key").unwrap();
        let error = tls.reload().unwrap_err();
        assert!(error.starts_with("tls.key "), "{error}");
        // Still serving with the old one.
        let _ = tls.acceptor(Protocol::Grpc);
        let missing = TlsSettings {
            cert: dir.path().join("absent.pem"),
            ..settings.clone()
        };
        let error = ReloadingTls::load(&missing).err().unwrap();
        assert!(error.starts_with("tls.cert "), "{error}");
        let other = write_pair(dir.path(), "other");
        let mismatched = TlsSettings {
            key: other.key,
            ..write_pair(dir.path(), "server")
        };
        let error = ReloadingTls::load(&mismatched).err().unwrap();
        assert!(error.contains("do not make a certificate"), "{error}");
    }

    #[test]
    fn alpn_says_h2_for_grpc_and_http_1_1_for_the_http_listener() {
        let dir = tempfile::tempdir().unwrap();
        let settings = write_pair(dir.path(), "server");
        let [grpc, http] = read_configs(&settings).unwrap();
        assert_eq!(grpc.alpn_protocols, [b"h2".to_vec()]);
        assert_eq!(http.alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
