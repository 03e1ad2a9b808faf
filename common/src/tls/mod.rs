//! What smtpd and the smtp client share about TLS (rustls with the ring provider, TLSv1.2 and
//! TLSv1.3 only): Postfix's protocol lists ([`protocols`]), OpenSSL's names for what a handshake
//! negotiated ([`names`]), PEM files ([`pem`]) and the plain-or-TLS stream ([`stream`]).

/// OpenSSL's names for protocols, ciphers, groups and signatures, and the summary of a
/// finished handshake.
pub mod names;
/// Certificates and keys from PEM files, with Postfix's words for what is wrong with them.
pub mod pem;
/// Postfix's protocol-list syntax (`>=TLSv1`, `!SSLv2, !SSLv3`, ...).
pub mod protocols;
/// One stream type for plain TCP and TLS.
pub mod stream;
/// Certificates made for tests.
#[cfg(any(test, feature = "test-pki"))]
pub mod test_pki;

pub use names::TlsInfo;
pub use protocols::parse_protocols;
pub use stream::SmtpStream;

/// The crypto provider every TLS context uses.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
