//! TLS helpers: the outbound HTTP client (trusting `mock.tls.ca_file`), throw-away certificates
//! for the fake providers, and PKCS#12 → client identity for APNs certificate auth.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// A TLS setup failure.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}: cannot be read: {1}.")]
    Read(String, String),
    #[error("{0}: is not a usable certificate or key: {1}.")]
    Parse(String, String),
    #[error("Certificate generation failed: {0}.")]
    Generate(String),
}

/// Builds the outbound client towards a provider: HTTP/2 only (prior knowledge, ALPN `h2`), so
/// that concurrent requests share one connection; `TCP_NODELAY`; the normal web roots plus
/// `ca_file`; an optional client identity (PEM with key and certificates).
pub fn http_client(
    ca_file: Option<&Path>,
    identity_pem: Option<&[u8]>,
    timeout: Duration,
) -> Result<reqwest::Client, TlsError> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .http2_prior_knowledge()
        .tcp_nodelay(true)
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(600))
        .http2_keep_alive_interval(Duration::from_secs(60))
        .http2_keep_alive_while_idle(true);
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| TlsError::Read(ca.display().to_string(), e.to_string()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| TlsError::Parse(ca.display().to_string(), e.to_string()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    if let Some(pem) = identity_pem {
        let id = reqwest::Identity::from_pem(pem)
            .map_err(|e| TlsError::Parse("client identity".into(), e.to_string()))?;
        b = b.identity(id);
    }
    b.build()
        .map_err(|e| TlsError::Parse("HTTP client".into(), e.to_string()))
}

/// Reads a PKCS#12 keystore and returns its key and certificate chain as one PEM blob.
pub fn pkcs12_to_pem(path: &Path, password: &str) -> Result<Vec<u8>, TlsError> {
    let name = path.display().to_string();
    let data = std::fs::read(path).map_err(|e| TlsError::Read(name.clone(), e.to_string()))?;
    let ks = p12_keystore::KeyStore::from_pkcs12(&data, password)
        .map_err(|e| TlsError::Parse(name.clone(), e.to_string()))?;
    let (_, chain) = ks
        .private_key_chain()
        .ok_or_else(|| TlsError::Parse(name.clone(), "no private key entry".into()))?;
    let mut out = pem_block("PRIVATE KEY", chain.key());
    for c in chain.chain() {
        out.push_str(&pem_block("CERTIFICATE", c.as_der()));
    }
    Ok(out.into_bytes())
}

/// Writes `der` as a PEM block.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// A generated CA with one server certificate (for `localhost`, 127.0.0.1, ::1) and the means to
/// issue client certificates.
pub struct TestPki {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl TestPki {
    pub fn generate() -> Result<TestPki, TlsError> {
        let g = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let ca_key = KeyPair::generate().map_err(g)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(g)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mock-middleware test CA");
        let ca_cert = ca_params.clone().self_signed(&ca_key).map_err(g)?;
        let server_key = KeyPair::generate().map_err(g)?;
        let mut sp = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .map_err(g)?;
        sp.distinguished_name.push(DnType::CommonName, "localhost");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = sp.signed_by(&server_key, &ca_cert, &ca_key).map_err(g)?;
        Ok(TestPki {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
            ca_params,
            ca_key,
        })
    }

    /// Issues a client certificate; returns (certificate DER, PKCS#8 key DER).
    pub fn client_cert(&self, common_name: &str) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let g = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let ca_cert = self
            .ca_params
            .clone()
            .self_signed(&self.ca_key)
            .map_err(g)?;
        let key = KeyPair::generate().map_err(g)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(g)?;
        p.distinguished_name.push(DnType::CommonName, common_name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &ca_cert, &self.ca_key).map_err(g)?;
        Ok((cert.der().to_vec(), key.serialize_der()))
    }
}

/// Writes a PKCS#12 keystore holding one key and certificate.
pub fn write_pkcs12(cert_der: &[u8], key_der: &[u8], password: &str) -> Result<Vec<u8>, TlsError> {
    let cert = p12_keystore::Certificate::from_der(cert_der)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let chain = p12_keystore::PrivateKeyChain::new(key_der, [1u8, 2, 3, 4], vec![cert]);
    let mut ks = p12_keystore::KeyStore::new();
    ks.add_entry("apns", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    ks.writer(password)
        .write()
        .map_err(|e| TlsError::Generate(e.to_string()))
}

/// A rustls server config with ALPN `h2` only; with `client_ca`, client certificates from that
/// CA are verified when offered (but not required).
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let p = |e: String| TlsError::Parse("server certificate".into(), e);
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| p(e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| p(e.to_string()))?
        .ok_or_else(|| p("no private key".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| p(e.to_string()))?;
    let builder = match client_ca_pem {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut ca.as_bytes()) {
                roots
                    .add(c.map_err(|e| p(e.to_string()))?)
                    .map_err(|e| p(e.to_string()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| p(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| p(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}
