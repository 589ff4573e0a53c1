//! Throw-away certificates for tests, demos and the fake providers: a generated CA with a
//! `localhost` server certificate, client certificates from it, and PKCS#12 keystores. Nothing
//! in the production path uses this module.

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

use crate::tls::TlsError;

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
