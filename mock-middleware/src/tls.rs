//! TLS for production use: the outbound HTTP/2 client towards the providers (trusting
//! `mock.tls.ca_file`), PKCS#12 → client identity for APNs certificate auth, and the rustls
//! server configuration the fake providers serve with. Generating throw-away certificates for
//! tests and demos lives apart, in [`crate::testpki`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
