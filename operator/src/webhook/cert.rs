//! The webhook's own PKI: a CA and a serving certificate signed by it, and when to renew
//! them. Pure apart from key generation; the clock is a parameter.
//!
//! The serving certificate lives a year and is renewed 60 days before it ends, signed by the
//! same CA, so the webhook configuration's caBundle does not change. The CA lives five years
//! and is renewed a year before it ends; the old CA stays in the bundle (`ca.crt`) until it
//! expires, so API servers that still hold the old bundle keep trusting the webhook.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

/// Lifetime of the CA.
pub const CA_LIFETIME: Duration = Duration::days(5 * 365);
/// The CA is renewed when less than this is left.
pub const CA_RENEW_BEFORE: Duration = Duration::days(365);
/// Lifetime of the serving certificate.
pub const CERT_LIFETIME: Duration = Duration::days(365);
/// The serving certificate is renewed when less than this is left.
pub const CERT_RENEW_BEFORE: Duration = Duration::days(60);

/// Secret keys of the bundle, as `kubernetes.io/tls` Secrets name the first two.
pub const KEY_TLS_CERT: &str = "tls.crt";
/// Serving key.
pub const KEY_TLS_KEY: &str = "tls.key";
/// CA certificates, newest first: the caBundle.
pub const KEY_CA_CERT: &str = "ca.crt";
/// Key of the newest CA.
pub const KEY_CA_KEY: &str = "ca.key";

/// A certificate operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused to build or sign.
    #[error("cannot {step}: {source}")]
    Generate {
        step: &'static str,
        #[source]
        source: rcgen::Error,
    },
    /// PEM text did not parse.
    #[error("{what} is not valid PEM: {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// PEM text held no certificate.
    #[error("{what} holds no CERTIFICATE block")]
    NoCertificate { what: &'static str },
    /// A certificate did not parse as X.509.
    #[error("{what} is not a valid X.509 certificate: {source}")]
    X509 {
        what: &'static str,
        #[source]
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
}

/// The CA and serving certificate, as PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// CA certificates, newest (the signer) first.
    pub ca_cert: String,
    /// Key of the newest CA.
    pub ca_key: String,
    /// Serving certificate.
    pub cert: String,
    /// Serving key.
    pub key: String,
}

fn generate(step: &'static str) -> impl FnOnce(rcgen::Error) -> CertError {
    move |source| CertError::Generate { step, source }
}

/// A new CA and a serving certificate for `dns_names`, valid from `now`.
pub fn new_bundle(dns_names: &[String], now: OffsetDateTime) -> Result<Bundle, CertError> {
    let (ca_cert, ca_key) = new_ca(now)?;
    let (cert, key) = issue(&ca_cert, &ca_key, dns_names, now)?;
    Ok(Bundle {
        ca_cert,
        ca_key,
        cert,
        key,
    })
}

fn new_ca(now: OffsetDateTime) -> Result<(String, String), CertError> {
    let key = KeyPair::generate().map_err(generate("generate the CA key"))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        format!("bondnet-webhook-ca-{}", now.unix_timestamp()),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + CA_LIFETIME;
    let cert = params
        .self_signed(&key)
        .map_err(generate("self-sign the CA"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A serving certificate for `dns_names` signed by the first CA of `ca_cert`.
fn issue(
    ca_cert: &str,
    ca_key: &str,
    dns_names: &[String],
    now: OffsetDateTime,
) -> Result<(String, String), CertError> {
    let ca_key = KeyPair::from_pem(ca_key).map_err(generate("read the CA key"))?;
    let signer = first_pem_certificate(ca_cert, "ca.crt")?;
    let issuer =
        Issuer::from_ca_cert_der(&signer, ca_key).map_err(generate("read the CA certificate"))?;
    let key = KeyPair::generate().map_err(generate("generate the serving key"))?;
    let mut params =
        CertificateParams::new(dns_names.to_vec()).map_err(generate("use the DNS names"))?;
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        dns_names.first().cloned().unwrap_or_default(),
    );
    params.distinguished_name = name;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + CERT_LIFETIME;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(generate("sign the serving certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn pem_certificates(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CertError::Pem { what, source })
}

fn first_pem_certificate(
    pem: &str,
    what: &'static str,
) -> Result<CertificateDer<'static>, CertError> {
    pem_certificates(pem, what)?
        .into_iter()
        .next()
        .ok_or(CertError::NoCertificate { what })
}

/// When a DER certificate stops being valid.
fn not_after(der: &CertificateDer<'_>, what: &'static str) -> Result<OffsetDateTime, CertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|source| CertError::X509 { what, source })?;
    Ok(cert.validity().not_after.to_datetime())
}

/// DNS names of a serving certificate.
fn dns_names_of(der: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
        .collect()
}

/// What a stored bundle needs at `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// Good as it is.
    Keep,
    /// A new serving certificate from the same CA (the caBundle stays).
    Cert,
    /// A new CA and serving certificate; the old CA stays in the bundle.
    Ca,
}

/// Decides whether `bundle` is still good at `now` for `dns_names`.
pub fn renewal(
    bundle: &Bundle,
    dns_names: &[String],
    now: OffsetDateTime,
) -> Result<Renewal, CertError> {
    let ca = first_pem_certificate(&bundle.ca_cert, "ca.crt")?;
    if not_after(&ca, "ca.crt")? - now < CA_RENEW_BEFORE {
        return Ok(Renewal::Ca);
    }
    let cert = first_pem_certificate(&bundle.cert, "tls.crt")?;
    let mut have = dns_names_of(&cert);
    let mut want = dns_names.to_vec();
    have.sort();
    want.sort();
    if not_after(&cert, "tls.crt")? - now < CERT_RENEW_BEFORE || have != want {
        return Ok(Renewal::Cert);
    }
    Ok(Renewal::Keep)
}

/// The bundle after `renewal`, or `None` when it is to be kept.
pub fn renew(
    bundle: &Bundle,
    dns_names: &[String],
    now: OffsetDateTime,
) -> Result<Option<Bundle>, CertError> {
    match renewal(bundle, dns_names, now)? {
        Renewal::Keep => Ok(None),
        Renewal::Cert => {
            let (cert, key) = issue(&bundle.ca_cert, &bundle.ca_key, dns_names, now)?;
            Ok(Some(Bundle {
                cert,
                key,
                ..bundle.clone()
            }))
        }
        Renewal::Ca => {
            let fresh = new_bundle(dns_names, now)?;
            // Keep the CAs that are still valid, so clients holding the old bundle still trust us.
            let mut ca_cert = fresh.ca_cert.clone();
            for block in pem_blocks(&bundle.ca_cert) {
                let old = first_pem_certificate(&block, "ca.crt")?;
                if not_after(&old, "ca.crt")? > now {
                    ca_cert.push_str(&block);
                }
            }
            Ok(Some(Bundle { ca_cert, ..fresh }))
        }
    }
}

/// The CERTIFICATE blocks of a PEM bundle, each as its own text.
fn pem_blocks(bundle: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    bundle
        .split_inclusive(END)
        .filter(|block| block.contains(END))
        .map(|block| format!("{}\n", block.trim()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["bondnet-webhook.bondnet-system.svc".to_owned()]
    }

    fn start() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid time")
    }

    #[test]
    fn a_new_bundle_is_kept_until_the_serving_certificate_nears_its_end() {
        let bundle = new_bundle(&names(), start()).expect("bundle");
        assert_eq!(
            renewal(&bundle, &names(), start()).expect("reads"),
            Renewal::Keep
        );
        let later = start() + CERT_LIFETIME - CERT_RENEW_BEFORE + Duration::days(1);
        assert_eq!(
            renewal(&bundle, &names(), later).expect("reads"),
            Renewal::Cert
        );
    }

    #[test]
    fn renewing_the_serving_certificate_keeps_the_ca_bundle() {
        let bundle = new_bundle(&names(), start()).expect("bundle");
        let later = start() + Duration::days(330);
        let renewed = renew(&bundle, &names(), later)
            .expect("renews")
            .expect("changed");
        assert_eq!(renewed.ca_cert, bundle.ca_cert);
        assert_eq!(renewed.ca_key, bundle.ca_key);
        assert_ne!(renewed.cert, bundle.cert);
        assert_eq!(
            renewal(&renewed, &names(), later).expect("reads"),
            Renewal::Keep
        );
    }

    #[test]
    fn a_changed_service_name_gets_a_new_certificate() {
        let bundle = new_bundle(&names(), start()).expect("bundle");
        let other = vec!["other.ns.svc".to_owned()];
        assert_eq!(
            renewal(&bundle, &other, start()).expect("reads"),
            Renewal::Cert
        );
    }

    #[test]
    fn a_ca_near_its_end_is_replaced_and_the_old_one_stays_trusted() {
        let bundle = new_bundle(&names(), start()).expect("bundle");
        let later = start() + CA_LIFETIME - CA_RENEW_BEFORE + Duration::days(1);
        let renewed = renew(&bundle, &names(), later)
            .expect("renews")
            .expect("changed");
        assert_ne!(renewed.ca_key, bundle.ca_key);
        assert_eq!(pem_blocks(&renewed.ca_cert).len(), 2, "{}", renewed.ca_cert);
        assert!(renewed.ca_cert.ends_with(&bundle.ca_cert));
        assert_eq!(
            renewal(&renewed, &names(), later).expect("reads"),
            Renewal::Keep
        );
        // At the next CA renewal the first CA has expired and is dropped; the second stays.
        let much_later = later + CA_LIFETIME - CA_RENEW_BEFORE + Duration::days(1);
        let again = renew(&renewed, &names(), much_later)
            .expect("renews")
            .expect("changed");
        assert_eq!(pem_blocks(&again.ca_cert).len(), 2);
        assert!(!again.ca_cert.contains(bundle.ca_cert.trim()));
    }

    #[test]
    fn garbage_in_the_secret_is_reported_naming_the_key() {
        let mut bundle = new_bundle(&names(), start()).expect("bundle");
        bundle.cert = "not pem".to_owned();
        let err = renewal(&bundle, &names(), start()).expect_err("unreadable");
        assert!(err.to_string().contains("tls.crt"), "{err}");
    }
}
