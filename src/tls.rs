//! TLS client configuration from Dovecot's `ssl_client_ca_file`,
//! `ssl_client_ca_dir` and `ssl_client_require_valid_cert`, as the built-in
//! driver's lib-http client uses them. Built lazily by the sender, at the first
//! https connection of a process.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::http::TlsSettings;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn add_pem_file(roots: &mut RootCertStore, path: &Path) -> usize {
    let Ok(iter) = CertificateDer::pem_file_iter(path) else {
        return 0;
    };
    let mut n = 0;
    for cert in iter.flatten() {
        if roots.add(cert).is_ok() {
            n += 1;
        }
    }
    n
}

pub fn client_config(set: &TlsSettings) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if !set.verify {
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth();
        return Ok(Arc::new(config));
    }
    let mut roots = RootCertStore::empty();
    if let Some(file) = &set.ca_file {
        if add_pem_file(&mut roots, Path::new(file)) == 0 {
            return Err(format!("ssl_client_ca_file {file}: no usable certificate"));
        }
    }
    let dir = set
        .ca_dir
        .clone()
        .unwrap_or_else(|| "/etc/ssl/certs".to_string());
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        // Debian's directory has one bundle plus the same certificates one per
        // file; the bundle alone is enough when it is there.
        let bundle = Path::new(&dir).join("ca-certificates.crt");
        if bundle.exists() {
            add_pem_file(&mut roots, &bundle);
        } else {
            for f in files.iter().filter(|f| f.is_file()) {
                add_pem_file(&mut roots, f);
            }
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
