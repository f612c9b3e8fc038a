//! Serving TLS directly (rustls on aws-lc-rs): `tls_cert` and `tls_key` are PEM files, read at
//! start (a bad pair stops the start) and read again when either changes on disk, so a renewed
//! certificate (certbot, cert-manager, an ACME client's hook) takes effect without a restart. A
//! pair that fails to load is logged and the one in use is kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ServerConfig, version};

/// The certificate in use, swapped when the files change.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|k| k.clone())
    }
}

/// TLS for the listeners.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<Current>,
    acceptor: TlsAcceptor,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// Read a certificate chain and its private key (PKCS#8, SEC1 or PKCS#1 PEM).
fn load_pair(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let cert_pem = std::fs::read(cert).map_err(|e| anyhow::anyhow!("tls_cert: cannot read {}: {e}", cert.display()))?;
    let key_pem = std::fs::read(key).map_err(|e| anyhow::anyhow!("tls_key: cannot read {}: {e}", key.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("tls_cert: {}: {e}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("tls_cert: {} holds no certificate", cert.display());
    }
    let private =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| anyhow::anyhow!("tls_key: {}: {e}", key.display()))?;
    CertifiedKey::from_der(chain, private, &provider())
        .map_err(|e| anyhow::anyhow!("tls_cert and tls_key do not make a pair: {e}"))
}

fn modified(paths: [&Path; 2]) -> Option<[SystemTime; 2]> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some([m(paths[0])?, m(paths[1])?])
}

impl Tls {
    /// Load the pair; an error says which file is wrong.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let current = Arc::new(Current(RwLock::new(Arc::new(load_pair(cert, key)?))));
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .map_err(|e| anyhow::anyhow!("tls: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self { cert: cert.to_owned(), key: key.to_owned(), current, acceptor: TlsAcceptor::from(Arc::new(config)) })
    }

    /// The acceptor the listeners wrap connections in.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Look at the files every `every` and load them again when either changed, until
    /// `shutdown` is true.
    pub async fn watch(self: Arc<Self>, every: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut seen = modified([&self.cert, &self.key]);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let now = modified([&self.cert, &self.key]);
            if now.is_none() || now == seen {
                continue;
            }
            match load_pair(&self.cert, &self.key) {
                Ok(pair) => {
                    if let Ok(mut slot) = self.current.0.write() {
                        *slot = Arc::new(pair);
                    }
                    seen = now;
                    tracing::info!(cert = %self.cert.display(), "tls: certificate reloaded");
                }
                // Half-written files (the certificate renewed, the key not yet): try again at
                // the next look; the pair in use stays.
                Err(e) => {
                    tracing::warn!(error = %e, "tls: the changed files do not load; keeping the certificate in use")
                }
            }
        }
    }
}
