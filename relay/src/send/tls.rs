//! TLS client configuration from the mail user's `ssl_client_ca_file`,
//! `ssl_client_ca_dir` and `ssl_client_require_valid_cert`, as the built-in
//! driver's lib-http client uses them. Built at an endpoint's first https
//! connection. The CA files are named by a client of the relay socket, so they
//! are read only through [`safe_fs::read_trusted`] (no FIFO, no file someone
//! other than root could have planted, bounded size).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use ox_push_record::Target;

use crate::safe_fs;

/// A CA bundle is at most this large (Debian's is about 220 KB).
const MAX_CA_FILE: u64 = 8 * 1024 * 1024;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn add_pem_file(roots: &mut RootCertStore, path: &Path) -> Result<usize, String> {
    let pem = safe_fs::read_trusted(path, MAX_CA_FILE)?;
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
        if roots.add(cert).is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

pub fn client_config(set: &Target) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if !set.tls_verify {
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth();
        return Ok(Arc::new(config));
    }
    let mut roots = RootCertStore::empty();
    if let Some(file) = &set.ca_file {
        let n = add_pem_file(&mut roots, Path::new(file))
            .map_err(|e| format!("ssl_client_ca_file: {e}"))?;
        if n == 0 {
            return Err(format!("ssl_client_ca_file {file}: no usable certificate"));
        }
    }
    let dir = set
        .ca_dir
        .clone()
        .unwrap_or_else(|| "/etc/ssl/certs".to_string());
    // Debian's directory has one bundle plus the same certificates one per
    // file; the bundle alone is enough when it is there.
    let bundle = Path::new(&dir).join("ca-certificates.crt");
    if bundle.exists() {
        add_pem_file(&mut roots, &bundle).map_err(|e| format!("ssl_client_ca_dir: {e}"))?;
    } else if let Ok(files) = safe_fs::list_trusted(Path::new(&dir)) {
        for f in files.iter().filter(|f| f.is_file()) {
            // One unreadable file in a directory of certificates is no reason
            // to give up on the others.
            let _ = add_pem_file(&mut roots, f);
        }
    }
    if roots.is_empty() {
        return Err(
            "no trusted CA certificates (set ssl_client_ca_file or ssl_client_ca_dir)".into(),
        );
    }
    Ok(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

/// `ssl_client_require_valid_cert = no`: accept any certificate, but still check
/// the handshake signatures.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
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
