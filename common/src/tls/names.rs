//! OpenSSL's names for what a TLS handshake negotiated, which Postfix logs and puts into its
//! `Received:` header: protocol, cipher and bits, key exchange group, server signature.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::{CipherSuite, CommonState, ProtocolVersion, SignatureScheme};

/// What the server signed with in one handshake: the scheme and the signature's length
/// (an RSA signature is as long as the modulus, which gives Postfix's key bits). The server
/// records it when it signs, the client when it checks the signature.
pub type SignatureSeen = Arc<Mutex<Option<(SignatureScheme, usize)>>>;

/// Record a signature in `seen`.
pub fn record_signature(seen: &SignatureSeen, scheme: SignatureScheme, len: usize) {
    *seen.lock().unwrap_or_else(PoisonError::into_inner) = Some((scheme, len));
}

/// What a finished handshake negotiated, in OpenSSL's names (which Postfix logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.3`.
    pub protocol: String,
    /// `TLS_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The cipher's key bits, used and of the algorithm (`256/256`).
    pub bits: u16,
    /// The TLSv1.3 key exchange group (`X25519`); Postfix names none for TLSv1.2.
    pub kex: Option<String>,
    /// The TLSv1.3 server signature as Postfix shows it: `ECDSA (prime256v1) server-digest
    /// SHA256`, `RSA-PSS (2048 bits) server-digest SHA256`, `ED25519`; none when the session was
    /// resumed (nothing was signed).
    pub server_signature: Option<String>,
}

impl TlsInfo {
    /// What `conn` negotiated; `seen` is the server's signature as recorded by the side that
    /// made or checked it (rustls tells neither side which scheme was used).
    pub fn of(conn: &CommonState, seen: &SignatureSeen) -> TlsInfo {
        let protocol = match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(v) => format!("{v:?}"),
            None => "unknown".to_string(),
        };
        let (cipher, bits) = conn.negotiated_cipher_suite().map_or(("unknown".into(), 0), |s| cipher_name(s.suite()));
        let tls13 = conn.protocol_version() == Some(ProtocolVersion::TLSv1_3);
        let kex = tls13.then(|| conn.negotiated_key_exchange_group().map(|g| group_name(g.name()))).flatten();
        let signed = *seen.lock().unwrap_or_else(PoisonError::into_inner);
        let server_signature = tls13.then(|| signed.and_then(|(scheme, len)| signature_name(scheme, len))).flatten();
        TlsInfo { protocol, cipher, bits, kex, server_signature }
    }

    /// The part of Postfix's `tls_log_summary` line after the peer: `TLSv1.3 with cipher ...
    /// (256/256 bits) key-exchange X25519 server-signature ...`.
    pub fn details(&self) -> String {
        let mut line = format!("{} with cipher {} ({}/{} bits)", self.protocol, self.cipher, self.bits, self.bits);
        if let Some(kex) = &self.kex {
            line.push_str(&format!(" key-exchange {kex}"));
        }
        if let Some(sig) = &self.server_signature {
            line.push_str(&format!(" server-signature {sig}"));
        }
        line
    }

    /// smtpd's `tls_log_summary` line (smtpd_tls_loglevel >= 1): the client has no
    /// certificate, so it is `Anonymous`.
    pub fn summary(&self, peer: &str) -> String {
        format!("Anonymous TLS connection established from {peer}: {}", self.details())
    }

    /// The smtp client's line (smtp_tls_loglevel >= 1), `trust` being `Untrusted`, `Trusted`
    /// or `Verified` and `peer` `host[addr]:port`.
    pub fn client_summary(&self, trust: &str, peer: &str) -> String {
        format!("{trust} TLS connection established to {peer}: {}", self.details())
    }

    /// The lines Postfix adds to its `Received:` header after `from ...`, each with its CRLF.
    pub fn received_clause(&self) -> String {
        let mut out = format!("\t(using {} with cipher {} ({}/{} bits)", self.protocol, self.cipher, self.bits, self.bits);
        // Postfix starts a continuation line for the key exchange, or else for the signature.
        match (&self.kex, &self.server_signature) {
            (Some(kex), sig) => {
                out.push_str(&format!("\r\n\t key-exchange {kex}"));
                if let Some(sig) = sig {
                    out.push_str(&format!(" server-signature {sig}"));
                }
            }
            (None, Some(sig)) => out.push_str(&format!("\r\n\t server-signature {sig}")),
            (None, None) => {}
        }
        out.push_str(")\r\n\t(No client certificate requested)\r\n");
        out
    }
}

/// OpenSSL's name for a cipher suite, and its key bits.
pub fn cipher_name(suite: CipherSuite) -> (String, u16) {
    let (name, bits) = match suite {
        CipherSuite::TLS13_AES_256_GCM_SHA384 => ("TLS_AES_256_GCM_SHA384", 256),
        CipherSuite::TLS13_AES_128_GCM_SHA256 => ("TLS_AES_128_GCM_SHA256", 128),
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => ("TLS_CHACHA20_POLY1305_SHA256", 256),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => ("ECDHE-ECDSA-AES256-GCM-SHA384", 256),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => ("ECDHE-ECDSA-AES128-GCM-SHA256", 128),
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => ("ECDHE-ECDSA-CHACHA20-POLY1305", 256),
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => ("ECDHE-RSA-AES256-GCM-SHA384", 256),
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => ("ECDHE-RSA-AES128-GCM-SHA256", 128),
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => ("ECDHE-RSA-CHACHA20-POLY1305", 256),
        other => return (format!("{other:?}"), 0),
    };
    (name.to_string(), bits)
}

/// Postfix's words for a TLSv1.3 server signature (`tls_get_signature_params`): the key type
/// with its curve or bits, and the digest.
pub fn signature_name(scheme: SignatureScheme, len: usize) -> Option<String> {
    use SignatureScheme as S;
    let rsa = |digest: &str| format!("RSA-PSS ({} bits) server-digest {digest}", len * 8);
    Some(match scheme {
        S::ECDSA_NISTP256_SHA256 => "ECDSA (prime256v1) server-digest SHA256".into(),
        S::ECDSA_NISTP384_SHA384 => "ECDSA (secp384r1) server-digest SHA384".into(),
        S::ECDSA_NISTP521_SHA512 => "ECDSA (secp521r1) server-digest SHA512".into(),
        S::RSA_PSS_SHA256 => rsa("SHA256"),
        S::RSA_PSS_SHA384 => rsa("SHA384"),
        S::RSA_PSS_SHA512 => rsa("SHA512"),
        S::ED25519 => "ED25519".into(),
        _ => return None,
    })
}

/// OpenSSL's name for a key exchange group.
pub fn group_name(g: rustls::NamedGroup) -> String {
    match g {
        rustls::NamedGroup::X25519 => "X25519".into(),
        rustls::NamedGroup::secp256r1 => "secp256r1".into(),
        rustls::NamedGroup::secp384r1 => "secp384r1".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_and_header_shapes() {
        let info = TlsInfo {
            protocol: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            bits: 256,
            kex: Some("X25519".into()),
            server_signature: signature_name(SignatureScheme::RSA_PSS_SHA256, 256),
        };
        // The line Postfix 3.7 logged (reference/postfix-behavior.md 16.1).
        assert_eq!(
            info.summary("localhost[127.0.0.1]"),
            "Anonymous TLS connection established from localhost[127.0.0.1]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256"
        );
        assert_eq!(
            info.received_clause(),
            "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)\r\n\t key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256)\r\n\t(No client certificate requested)\r\n"
        );
        let resumed = TlsInfo { server_signature: None, ..info };
        assert!(resumed.summary("x[192.0.2.1]").ends_with("key-exchange X25519"));
        let tls12 = TlsInfo {
            protocol: "TLSv1.2".into(),
            cipher: "ECDHE-RSA-AES256-GCM-SHA384".into(),
            bits: 256,
            kex: None,
            server_signature: None,
        };
        assert_eq!(
            tls12.received_clause(),
            "\t(using TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits))\r\n\t(No client certificate requested)\r\n"
        );
    }
}
