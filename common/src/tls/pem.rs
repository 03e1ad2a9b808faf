//! Certificates and keys from PEM files: the server's certificate chain and key (smtpd), the
//! trusted CAs (`smtp_tls_CAfile`, `smtp_tls_CApath`). Errors are text for Postfix's warnings.

use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The certificates of a PEM file, at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> =
        CertificateDer::pem_file_iter(path).map_err(|e| pem_error(&e))?.collect::<Result<_, _>>().map_err(|e| pem_error(&e))?;
    if certs.is_empty() {
        return Err(format!("No PEM data in {}", path.display()));
    }
    Ok(certs)
}

pub fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM object of this type found".into(),
        other => format!("{other:?}"),
    }
}

/// Every certificate of every PEM file in `dir` (OpenSSL's `CApath`: one CA per file, under
/// hashed names or not). Files that hold no certificate are skipped, as OpenSSL skips them;
/// a directory that cannot be read is an error.
pub fn read_cert_dir(dir: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.is_file()
            && let Ok(certs) = read_certs(&path)
        {
            out.extend(certs);
        }
    }
    Ok(out)
}
