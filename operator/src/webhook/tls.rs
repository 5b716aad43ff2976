//! Where the serving certificate comes from, and keeping it current while serving.
//!
//! `Managed`: the CA and serving certificate live in a Secret the webhook creates and renews
//! itself (every replica reads the same Secret; writes use the resourceVersion, so two replicas
//! never overwrite each other), and the caBundle of the MutatingWebhookConfiguration is set to
//! the Secret's `ca.crt`. `Files`: a certificate and key mounted from elsewhere (cert-manager),
//! re-read on every check so a renewed certificate is served without a restart.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

use super::cert::{self, Bundle, KEY_CA_CERT, KEY_CA_KEY, KEY_TLS_CERT, KEY_TLS_KEY};
use crate::api::keys;
use crate::error::{Error, KubeStep, Result};

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// Made and rotated by the webhook, stored in a Secret.
    Managed(ManagedTls),
    /// PEM files mounted into the pod (cert-manager), re-read on every check.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
}

/// The self-managed certificate's Secret and the names it must carry.
#[derive(Debug, Clone)]
pub struct ManagedTls {
    /// Namespace of the Secret (the webhook's own).
    pub namespace: String,
    /// Name of the Secret.
    pub secret: String,
    /// DNS names of the webhook Service.
    pub dns_names: Vec<String>,
    /// MutatingWebhookConfiguration whose caBundle is kept current; `None` leaves it alone.
    pub webhook_configuration: Option<String>,
}

/// DNS names under which the API server reaches `service` in `namespace`.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_owned(),
    ]
}

/// Serves whatever certificate was set last.
#[derive(Default)]
pub struct CertResolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertResolver")
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().and_then(|c| c.clone())
    }
}

impl CertResolver {
    /// Serves `cert_pem` with `key_pem` from the next handshake on.
    pub fn set(&self, cert_pem: &str, key_pem: &str) -> Result<()> {
        let what = "the serving certificate";
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| cert::CertError::Pem { what, source })?;
        if chain.is_empty() {
            return Err(cert::CertError::NoCertificate { what }.into());
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|source| {
            cert::CertError::Pem {
                what: "the serving key",
                source,
            }
        })?;
        let signing =
            rustls::crypto::ring::sign::any_supported_type(&key).map_err(|source| Error::Tls {
                what: "key",
                source,
            })?;
        let certified = Arc::new(CertifiedKey::new(chain, signing));
        if let Ok(mut current) = self.current.write() {
            *current = Some(certified);
        }
        Ok(())
    }
}

/// Loads the first certificate, retrying API errors until it succeeds: the webhook cannot
/// serve without one. Errors in the certificate itself are returned.
pub async fn load_first(
    client: &Client,
    source: &TlsSource,
    resolver: &CertResolver,
) -> Result<()> {
    let mut delay = Duration::from_secs(1);
    loop {
        match sync_once(client, source, resolver).await {
            Ok(()) => return Ok(()),
            Err(err @ Error::Kube { .. }) => {
                tracing::warn!(error = %err, "cannot get the serving certificate yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Re-checks the certificate every `interval`, forever.
pub async fn maintain(
    client: Client,
    source: TlsSource,
    resolver: Arc<CertResolver>,
    interval: Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        if let Err(err) = sync_once(&client, &source, &resolver).await {
            tracing::warn!(error = %err, "certificate check failed; serving the previous certificate");
        }
    }
}

async fn sync_once(client: &Client, source: &TlsSource, resolver: &CertResolver) -> Result<()> {
    match source {
        TlsSource::Files { cert, key } => {
            let read = |path: &PathBuf| {
                std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
                    path: path.clone(),
                    source,
                })
            };
            resolver.set(&read(cert)?, &read(key)?)
        }
        TlsSource::Managed(managed) => {
            let bundle = stored_bundle(client, managed, OffsetDateTime::now_utc()).await?;
            resolver.set(&bundle.cert, &bundle.key)?;
            if let Some(name) = &managed.webhook_configuration {
                ensure_ca_bundle(client, name, &bundle.ca_cert).await?;
            }
            Ok(())
        }
    }
}

fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}

/// The Secret's bundle, created or renewed as needed. When another replica wrote first, its
/// bundle is used.
async fn stored_bundle(
    client: &Client,
    managed: &ManagedTls,
    now: OffsetDateTime,
) -> Result<Bundle> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &managed.namespace);
    let object = format!("Secret {}/{}", managed.namespace, managed.secret);
    for _ in 0..3 {
        let existing = api
            .get_opt(&managed.secret)
            .await
            .map_err(Error::kube(KubeStep::Get, object.clone()))?;
        let Some(secret) = existing else {
            let bundle = cert::new_bundle(&managed.dns_names, now)?;
            match api
                .create(&PostParams::default(), &to_secret(managed, &bundle, None))
                .await
            {
                Ok(_) => {
                    tracing::info!(secret = %object, "created the webhook's CA and serving certificate");
                    return Ok(bundle);
                }
                Err(err) if is_conflict(&err) => continue,
                Err(err) => return Err(Error::kube(KubeStep::Create, object)(err)),
            }
        };
        let renewed = match from_secret(&secret) {
            Some(bundle) => match cert::renew(&bundle, &managed.dns_names, now) {
                Ok(None) => return Ok(bundle),
                Ok(Some(renewed)) => renewed,
                Err(err) => {
                    tracing::warn!(error = %err, secret = %object, "stored certificate unreadable; replacing it");
                    cert::new_bundle(&managed.dns_names, now)?
                }
            },
            None => cert::new_bundle(&managed.dns_names, now)?,
        };
        let resource_version = secret.metadata.resource_version.clone();
        match api
            .replace(
                &managed.secret,
                &PostParams::default(),
                &to_secret(managed, &renewed, resource_version),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(secret = %object, "renewed the webhook certificate");
                return Ok(renewed);
            }
            Err(err) if is_conflict(&err) => continue,
            Err(err) => return Err(Error::kube(KubeStep::Update, object)(err)),
        }
    }
    Err(Error::SecretContended { secret: object })
}

fn to_secret(managed: &ManagedTls, bundle: &Bundle, resource_version: Option<String>) -> Secret {
    let data = BTreeMap::from([
        (
            KEY_CA_CERT.to_owned(),
            ByteString(bundle.ca_cert.clone().into_bytes()),
        ),
        (
            KEY_CA_KEY.to_owned(),
            ByteString(bundle.ca_key.clone().into_bytes()),
        ),
        (
            KEY_TLS_CERT.to_owned(),
            ByteString(bundle.cert.clone().into_bytes()),
        ),
        (
            KEY_TLS_KEY.to_owned(),
            ByteString(bundle.key.clone().into_bytes()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(managed.secret.clone()),
            namespace: Some(managed.namespace.clone()),
            labels: Some(BTreeMap::from([(
                keys::LABEL_MANAGED_BY.to_owned(),
                keys::MANAGED_BY.to_owned(),
            )])),
            resource_version,
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

fn from_secret(secret: &Secret) -> Option<Bundle> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .filter(|s| !s.is_empty())
    };
    Some(Bundle {
        ca_cert: text(KEY_CA_CERT)?,
        ca_key: text(KEY_CA_KEY)?,
        cert: text(KEY_TLS_CERT)?,
        key: text(KEY_TLS_KEY)?,
    })
}

/// Sets every webhook's caBundle in the configuration `name` to `ca_pem`, if it differs.
async fn ensure_ca_bundle(client: &Client, name: &str, ca_pem: &str) -> Result<()> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let object = format!("MutatingWebhookConfiguration {name}");
    let Some(mut configuration) = api
        .get_opt(name)
        .await
        .map_err(Error::kube(KubeStep::Get, object.clone()))?
    else {
        tracing::warn!(configuration = %name, "not found; its caBundle cannot be set (is the chart installed?)");
        return Ok(());
    };
    let wanted = ByteString(ca_pem.as_bytes().to_vec());
    let mut changed = false;
    for webhook in configuration.webhooks.iter_mut().flatten() {
        if webhook.client_config.ca_bundle.as_ref() != Some(&wanted) {
            webhook.client_config.ca_bundle = Some(wanted.clone());
            changed = true;
        }
    }
    if !changed {
        return Ok(());
    }
    match api
        .replace(name, &PostParams::default(), &configuration)
        .await
    {
        Ok(_) => {
            tracing::info!(configuration = %name, "caBundle updated");
            Ok(())
        }
        // Someone else changed it meanwhile; the next check sets it again.
        Err(err) if is_conflict(&err) => Ok(()),
        Err(err) => Err(Error::kube(KubeStep::Update, object)(err)),
    }
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};
    use serde_json::{json, Value};

    use super::*;
    use crate::mock::{self, status_error};

    const SECRET_PATH: &str = "/api/v1/namespaces/bondnet-system/secrets/bondnet-webhook-tls";
    const SECRETS_PATH: &str = "/api/v1/namespaces/bondnet-system/secrets";
    const CONFIG_PATH: &str =
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/bondnet-webhook";

    fn managed() -> ManagedTls {
        ManagedTls {
            namespace: "bondnet-system".into(),
            secret: "bondnet-webhook-tls".into(),
            dns_names: service_dns_names("bondnet-webhook", "bondnet-system"),
            webhook_configuration: Some("bondnet-webhook".into()),
        }
    }

    fn stored(bundle: &Bundle) -> Value {
        serde_json::to_value(to_secret(&managed(), bundle, Some("7".into()))).expect("secret")
    }

    fn configuration(ca_bundle: Option<&str>) -> Value {
        let mut webhook = json!({
            "name": "pods.bondnet.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "clientConfig": {"service": {"name": "bondnet-webhook", "namespace": "bondnet-system"}},
        });
        if let Some(ca) = ca_bundle {
            webhook["clientConfig"]["caBundle"] =
                serde_json::to_value(ByteString(ca.as_bytes().to_vec())).expect("base64");
        }
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "bondnet-webhook", "resourceVersion": "3"},
            "webhooks": [webhook],
        })
    }

    fn secret_text(body: &Value, key: &str) -> String {
        let bytes: ByteString =
            serde_json::from_value(body["data"][key].clone()).expect("base64 data");
        String::from_utf8(bytes.0).expect("utf-8")
    }

    fn ca_bundle_of(body: &Value) -> String {
        let bytes: ByteString =
            serde_json::from_value(body["webhooks"][0]["clientConfig"]["caBundle"].clone())
                .expect("caBundle");
        String::from_utf8(bytes.0).expect("utf-8")
    }

    fn sync(
        client: kube::Client,
        resolver: Arc<CertResolver>,
    ) -> tokio::task::JoinHandle<Result<()>> {
        tokio::spawn(
            async move { sync_once(&client, &TlsSource::Managed(managed()), &resolver).await },
        )
    }

    fn loaded(resolver: &CertResolver) -> bool {
        resolver
            .current
            .read()
            .map(|c| c.is_some())
            .unwrap_or(false)
    }

    #[tokio::test]
    async fn the_first_start_creates_the_secret_and_sets_the_ca_bundle() {
        let (client, mut api) = mock::client();
        let resolver = Arc::new(CertResolver::default());
        let task = sync(client, resolver.clone());
        api.expect(
            Method::GET,
            SECRET_PATH,
            StatusCode::NOT_FOUND,
            status_error(404, "NotFound", "no"),
        )
        .await;
        let created = api.expect_echo(Method::POST, SECRETS_PATH).await;
        assert_eq!(created.body["type"], "kubernetes.io/tls");
        assert_eq!(
            created.body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "bondnet"
        );
        let ca = secret_text(&created.body, "ca.crt");
        assert!(secret_text(&created.body, "tls.key").contains("PRIVATE KEY"));
        api.expect(
            Method::GET,
            CONFIG_PATH,
            StatusCode::OK,
            configuration(None),
        )
        .await;
        let updated = api.expect_echo(Method::PUT, CONFIG_PATH).await;
        assert_eq!(ca_bundle_of(&updated.body), ca);
        assert_eq!(updated.body["metadata"]["resourceVersion"], "3");
        task.await.expect("task").expect("sync succeeds");
        assert!(loaded(&resolver));
    }

    #[tokio::test]
    async fn a_valid_secret_and_a_current_ca_bundle_cause_no_write() {
        let bundle =
            cert::new_bundle(&managed().dns_names, OffsetDateTime::now_utc()).expect("bundle");
        let (client, mut api) = mock::client();
        let resolver = Arc::new(CertResolver::default());
        let task = sync(client, resolver.clone());
        api.expect(Method::GET, SECRET_PATH, StatusCode::OK, stored(&bundle))
            .await;
        api.expect(
            Method::GET,
            CONFIG_PATH,
            StatusCode::OK,
            configuration(Some(&bundle.ca_cert)),
        )
        .await;
        api.expect_no_more().await;
        task.await.expect("task").expect("sync succeeds");
        assert!(loaded(&resolver));
    }

    #[tokio::test]
    async fn when_another_replica_creates_the_secret_first_its_certificate_is_used() {
        let theirs =
            cert::new_bundle(&managed().dns_names, OffsetDateTime::now_utc()).expect("bundle");
        let (client, mut api) = mock::client();
        let task = sync(client, Arc::new(CertResolver::default()));
        api.expect(
            Method::GET,
            SECRET_PATH,
            StatusCode::NOT_FOUND,
            status_error(404, "NotFound", "no"),
        )
        .await;
        api.expect(
            Method::POST,
            SECRETS_PATH,
            StatusCode::CONFLICT,
            status_error(409, "AlreadyExists", "exists"),
        )
        .await;
        api.expect(Method::GET, SECRET_PATH, StatusCode::OK, stored(&theirs))
            .await;
        api.expect(
            Method::GET,
            CONFIG_PATH,
            StatusCode::OK,
            configuration(None),
        )
        .await;
        let updated = api.expect_echo(Method::PUT, CONFIG_PATH).await;
        assert_eq!(ca_bundle_of(&updated.body), theirs.ca_cert);
        task.await.expect("task").expect("sync succeeds");
    }

    #[tokio::test]
    async fn an_expiring_certificate_is_renewed_under_the_same_ca_with_the_resource_version() {
        let old = cert::new_bundle(
            &managed().dns_names,
            OffsetDateTime::now_utc() - time::Duration::days(330),
        )
        .expect("bundle");
        let (client, mut api) = mock::client();
        let task = sync(client, Arc::new(CertResolver::default()));
        api.expect(Method::GET, SECRET_PATH, StatusCode::OK, stored(&old))
            .await;
        let replaced = api.expect_echo(Method::PUT, SECRET_PATH).await;
        assert_eq!(replaced.body["metadata"]["resourceVersion"], "7");
        assert_eq!(secret_text(&replaced.body, "ca.crt"), old.ca_cert);
        assert_ne!(secret_text(&replaced.body, "tls.crt"), old.cert);
        api.expect(
            Method::GET,
            CONFIG_PATH,
            StatusCode::OK,
            configuration(Some(&old.ca_cert)),
        )
        .await;
        api.expect_no_more().await;
        task.await.expect("task").expect("sync succeeds");
    }

    #[tokio::test]
    async fn a_missing_webhook_configuration_is_not_an_error() {
        let bundle =
            cert::new_bundle(&managed().dns_names, OffsetDateTime::now_utc()).expect("bundle");
        let (client, mut api) = mock::client();
        let task = sync(client, Arc::new(CertResolver::default()));
        api.expect(Method::GET, SECRET_PATH, StatusCode::OK, stored(&bundle))
            .await;
        api.expect(
            Method::GET,
            CONFIG_PATH,
            StatusCode::NOT_FOUND,
            status_error(404, "NotFound", "no"),
        )
        .await;
        task.await.expect("task").expect("sync succeeds");
    }

    #[tokio::test]
    async fn files_from_cert_manager_are_served_and_unreadable_ones_are_named() {
        let bundle =
            cert::new_bundle(&["localhost".to_owned()], OffsetDateTime::now_utc()).expect("bundle");
        let dir = tempfile::tempdir().expect("tempdir");
        let cert_path = dir.path().join("tls.crt");
        let key_path = dir.path().join("tls.key");
        std::fs::write(&cert_path, &bundle.cert).expect("write");
        std::fs::write(&key_path, &bundle.key).expect("write");
        let (client, _api) = mock::client();
        let resolver = CertResolver::default();
        let files = TlsSource::Files {
            cert: cert_path.clone(),
            key: key_path,
        };
        sync_once(&client, &files, &resolver)
            .await
            .expect("files load");
        assert!(loaded(&resolver));
        std::fs::remove_file(&cert_path).expect("remove");
        let err = sync_once(&client, &files, &resolver)
            .await
            .expect_err("missing file");
        assert!(err.to_string().contains("tls.crt"), "{err}");
    }

    #[test]
    fn an_unusable_certificate_or_key_is_a_typed_error_with_its_cause() {
        use std::error::Error as _;
        let bundle =
            cert::new_bundle(&["localhost".to_owned()], OffsetDateTime::now_utc()).expect("bundle");
        let resolver = CertResolver::default();

        let no_block = resolver
            .set("not PEM at all", &bundle.key)
            .expect_err("no certificate");
        assert_eq!(no_block.category(), "Cert");
        assert!(
            no_block
                .to_string()
                .contains("the serving certificate holds no CERTIFICATE block"),
            "{no_block}"
        );

        let bad_key = resolver.set(
            &bundle.cert,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let bad_key = bad_key.expect_err("a key that is not a key");
        assert!(
            matches!(bad_key.category(), "Cert" | "Tls"),
            "{bad_key}: {}",
            bad_key.category()
        );
        assert!(bad_key.source().is_some(), "{bad_key} lost its cause");
        assert!(bad_key.to_string().contains("key"), "{bad_key}");
        assert!(!loaded(&resolver), "nothing unusable is served");
    }
}
