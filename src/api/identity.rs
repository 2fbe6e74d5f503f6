//! The caller's identity from its TLS client certificate (mutual TLS): the SPIFFE URI SAN, else
//! any URI SAN, else the first DNS SAN. A caller with a certificate cannot choose another identity
//! by sending `x-caller-id`.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The identity the first (leaf) certificate names, if it names one.
pub fn from_certificate(der: &[u8]) -> Option<String> {
    let (_, certificate) = X509Certificate::from_der(der).ok()?;
    let names = certificate.subject_alternative_name().ok()??;
    let names = &names.value.general_names;
    let uri = |spiffe_only: bool| {
        names.iter().find_map(|name| match name {
            GeneralName::URI(uri) if !spiffe_only || uri.starts_with("spiffe://") => {
                Some(uri.to_string())
            }
            _ => None,
        })
    };
    uri(true).or_else(|| uri(false)).or_else(|| {
        names.iter().find_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair, SanType};

    use super::*;

    fn certificate(names: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = names;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn spiffe_first_then_uri_then_dns() {
        let spiffe = "spiffe://example.org/agent/fe-1";
        let both = certificate(vec![
            SanType::DnsName("fe-1.example".try_into().unwrap()),
            SanType::URI("https://example.org/x".try_into().unwrap()),
            SanType::URI(spiffe.try_into().unwrap()),
        ]);
        assert_eq!(from_certificate(&both).as_deref(), Some(spiffe));
        let dns = certificate(vec![SanType::DnsName("fe-1.example".try_into().unwrap())]);
        assert_eq!(from_certificate(&dns).as_deref(), Some("fe-1.example"));
        assert_eq!(from_certificate(&certificate(Vec::new())), None);
        assert_eq!(from_certificate(b"not a certificate"), None);
    }
}
