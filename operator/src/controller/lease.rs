//! Leader election on a coordination.k8s.io Lease, so two replicas are safe: only the holder
//! reconciles. The decision is a pure function of the Lease and the clock; the loops around
//! it take over an expired lease with optimistic concurrency (resourceVersion) and give up
//! leadership, ending the process, when renewal fails for a whole lease duration.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;

use crate::error::{Error, KubeStep, Result};

/// Which lease, who we are, and the timing.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
}

/// What to do with the Lease as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create it, held by us.
    Create,
    /// Someone else's lease expired (or it is unheld): take it over.
    TakeOver,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds a valid lease for this long still.
    Wait(Duration),
}

/// Decides from the Lease's holder and renew time.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let seconds = u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0);
            let Some(renewed) = spec.renew_time.map(|t| t.0) else {
                return Decision::TakeOver;
            };
            let expires = renewed
                + jiff::SignedDuration::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX / 2));
            match expires.duration_since(now).as_secs() {
                left if left > 0 => Decision::Wait(Duration::from_secs(left.unsigned_abs())),
                _ => Decision::TakeOver,
            }
        }
    }
}

fn lease_spec(config: &LeaseConfig, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    let ours =
        previous.is_some_and(|p| p.holder_identity.as_deref() == Some(config.identity.as_str()));
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(config.duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: if ours {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours || previous.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..LeaseSpec::default()
    }
}

/// Tries once to create, take over or renew the lease; `Ok(None)` means we hold it now,
/// `Ok(Some(wait))` that someone else does.
pub async fn try_acquire(client: &Client, config: &LeaseConfig) -> Result<Option<Duration>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let object = format!("Lease {}/{}", config.namespace, config.name);
    let current = api
        .get_opt(&config.name)
        .await
        .map_err(Error::kube(KubeStep::Get, &object))?;
    let now = Timestamp::now();
    let result = match decide(current.as_ref(), &config.identity, now) {
        Decision::Wait(left) => return Ok(Some(left)),
        Decision::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(lease_spec(config, None, now)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        Decision::TakeOver | Decision::Renew => {
            let Some(mut lease) = current else {
                return Ok(Some(config.renew_every));
            };
            lease.spec = Some(lease_spec(config, lease.spec.as_ref(), now));
            // `replace` sends the resourceVersion we read: a racing writer makes it fail with 409.
            api.replace(&config.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(None),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Some(config.renew_every)),
        Err(source) => Err(Error::Kube {
            step: KubeStep::Apply,
            object,
            source,
        }),
    }
}

/// Waits until this replica holds the lease.
pub async fn acquire(client: &Client, config: &LeaseConfig) -> Result<()> {
    loop {
        match try_acquire(client, config).await {
            Ok(None) => return Ok(()),
            Ok(Some(wait)) => {
                tracing::debug!(lease = %config.name, wait_s = wait.as_secs(), "another replica leads");
                tokio::time::sleep(wait.min(config.renew_every)).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the leader lease; retrying");
                tokio::time::sleep(config.renew_every).await;
            }
        }
    }
}

/// Renews the lease forever; returns `LostLease` when another replica took it or renewal
/// failed for a whole lease duration.
pub async fn hold(client: &Client, config: &LeaseConfig) -> Error {
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(config.renew_every).await;
        match try_acquire(client, config).await {
            Ok(None) => last_renewed = tokio::time::Instant::now(),
            Ok(Some(_)) => break,
            Err(err) => {
                tracing::warn!(error = %err, "cannot renew the leader lease");
                if last_renewed.elapsed() >= config.duration {
                    break;
                }
            }
        }
    }
    Error::LostLease {
        lease: format!("{}/{}", config.namespace, config.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;
    use http::{Method, StatusCode};

    fn lease(holder: &str, renewed: &str, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("bondnet-controller".into()),
                namespace: Some("bondnet-system".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(seconds),
                renew_time: Some(MicroTime(renewed.parse().expect("time"))),
                lease_transitions: Some(2),
                ..LeaseSpec::default()
            }),
        }
    }

    fn now() -> Timestamp {
        "2026-01-01T00:00:10Z".parse().expect("time")
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, "me", now()), Decision::Create);
    }

    #[test]
    fn our_own_lease_is_renewed() {
        assert_eq!(
            decide(Some(&lease("me", "2026-01-01T00:00:00Z", 15)), "me", now()),
            Decision::Renew
        );
    }

    #[test]
    fn a_valid_foreign_lease_is_waited_out() {
        assert_eq!(
            decide(
                Some(&lease("other", "2026-01-01T00:00:00Z", 15)),
                "me",
                now()
            ),
            Decision::Wait(Duration::from_secs(5))
        );
    }

    #[test]
    fn an_expired_foreign_lease_is_taken_over() {
        assert_eq!(
            decide(
                Some(&lease("other", "2026-01-01T00:00:00Z", 5)),
                "me",
                now()
            ),
            Decision::TakeOver
        );
    }

    fn config() -> LeaseConfig {
        LeaseConfig {
            namespace: "bondnet-system".into(),
            name: "bondnet-controller".into(),
            identity: "me".into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }

    const PATH: &str =
        "/apis/coordination.k8s.io/v1/namespaces/bondnet-system/leases/bondnet-controller";

    #[tokio::test]
    async fn a_missing_lease_is_created_with_us_as_holder() {
        let (client, mut server) = mock::client();
        let task = tokio::spawn(async move { try_acquire(&client, &config()).await });
        server
            .expect(
                Method::GET,
                PATH,
                StatusCode::NOT_FOUND,
                mock::status_error(404, "NotFound", "no"),
            )
            .await;
        let create = server
            .expect(
                Method::POST,
                "/apis/coordination.k8s.io/v1/namespaces/bondnet-system/leases",
                StatusCode::CREATED,
                serde_json::to_value(lease("me", "2026-01-01T00:00:00Z", 15)).expect("json"),
            )
            .await;
        assert_eq!(create.body["spec"]["holderIdentity"], "me");
        assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(task.await.expect("task").expect("acquired"), None);
    }

    #[tokio::test]
    async fn taking_over_sends_the_resource_version_and_a_conflict_means_wait() {
        let (client, mut server) = mock::client();
        let task = tokio::spawn(async move { try_acquire(&client, &config()).await });
        let expired = lease("other", "2020-01-01T00:00:00Z", 15);
        server
            .expect(
                Method::GET,
                PATH,
                StatusCode::OK,
                serde_json::to_value(&expired).expect("json"),
            )
            .await;
        let replace = server
            .expect(
                Method::PUT,
                PATH,
                StatusCode::CONFLICT,
                mock::status_error(409, "Conflict", "changed"),
            )
            .await;
        assert_eq!(replace.body["metadata"]["resourceVersion"], "7");
        assert_eq!(replace.body["spec"]["holderIdentity"], "me");
        assert_eq!(replace.body["spec"]["leaseTransitions"], 3);
        assert_eq!(
            task.await.expect("task").expect("no error"),
            Some(Duration::from_secs(5))
        );
    }
}
