//! Leader election on a coordination.k8s.io Lease, so two replicas never write at once.
//!
//! - Expiry is judged by locally observed time, not another node's clock: a follower takes
//!   over only when the Lease's record (holder, renew time, resourceVersion) has stayed the
//!   same for a whole lease duration on its own monotonic clock.
//! - The leader renews every `renew_every`, each request bounded by `request_timeout`, and
//!   gives up (the controller stops writing and exits) when it has not renewed for
//!   `renew_deadline`, which is shorter than the lease duration. A follower can take over only
//!   a full duration after it saw the last renewal, which the leader sent before that, so the
//!   leader has stopped for at least `duration - renew_deadline` when the follower starts.
//! - Take-over and renewal replace the Lease with the resourceVersion read (optimistic
//!   concurrency): of two racing replicas one gets 409 and waits.
//!
//! kube-runtime has no leader election; kube-lease-manager and kubert's lease judge expiry
//! from the Lease's renewTime against the local clock (another node's timestamp), so this
//! module keeps its own loop.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tokio::time::Instant;

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
    /// How long the leader goes on without a successful renewal before it stops writing;
    /// shorter than `duration`.
    pub renew_deadline: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// Longest wait for one Lease request.
    pub request_timeout: Duration,
}

impl LeaseConfig {
    /// The timing bondnet runs with: 15 s leases, renewed every 2 s, given up after 10 s
    /// without a renewal, each request bounded by 2 s.
    pub fn with_defaults(namespace: String, name: String, identity: String) -> Self {
        Self {
            namespace,
            name,
            identity,
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_every: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
        }
    }

    /// The same with another lease duration and renew deadline (`--lease-duration-seconds`,
    /// `--lease-renew-deadline-seconds`). The deadline must be shorter than the duration, and
    /// longer than a renewal period plus a request's timeout, or the leader could stop
    /// between two renewals that both succeed.
    pub fn with_timing(
        mut self,
        duration: Duration,
        renew_deadline: Duration,
    ) -> crate::Result<Self> {
        let floor = self.renew_every + self.request_timeout;
        if renew_deadline >= duration || renew_deadline <= floor {
            return Err(crate::Error::LeaseTiming {
                duration,
                renew_deadline,
                floor,
            });
        }
        self.duration = duration;
        self.renew_deadline = renew_deadline;
        Ok(self)
    }
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

/// A foreign Lease record as this replica saw it, and since when (on its own clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    record: String,
    since: Instant,
}

fn record_of(lease: &Lease, spec: &LeaseSpec) -> String {
    format!(
        "{}|{:?}|{:?}|{}",
        spec.holder_identity.as_deref().unwrap_or_default(),
        spec.renew_time.as_ref().map(|t| t.0),
        spec.lease_duration_seconds,
        lease
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default()
    )
}

/// Decides from the Lease's holder and from how long its record has stayed unchanged on
/// this replica's clock (`seen`, updated here; `now` is the local monotonic time).
pub fn decide(
    lease: Option<&Lease>,
    identity: &str,
    seen: &mut Option<Observation>,
    now: Instant,
) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let seconds = u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0);
            let duration = Duration::from_secs(seconds);
            let record = record_of(lease, &spec);
            match seen {
                Some(observed) if observed.record == record => {
                    let unchanged = now.saturating_duration_since(observed.since);
                    match duration.checked_sub(unchanged) {
                        Some(left) if !left.is_zero() => Decision::Wait(left),
                        _ => Decision::TakeOver,
                    }
                }
                _ => {
                    *seen = Some(Observation { record, since: now });
                    Decision::Wait(duration)
                }
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
/// `Ok(Some(wait))` that someone else does. `seen` carries this replica's observation of a
/// foreign Lease from one try to the next. Each request is bounded by the request timeout.
pub async fn try_acquire(
    client: &Client,
    config: &LeaseConfig,
    seen: &mut Option<Observation>,
) -> Result<Option<Duration>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let object = format!("Lease {}/{}", config.namespace, config.name);
    let timed_out = |step| Error::LeaseTimeout {
        lease: format!("{}/{}", config.namespace, config.name),
        step,
        after: config.request_timeout,
    };
    let current = tokio::time::timeout(config.request_timeout, api.get_opt(&config.name))
        .await
        .map_err(|_| timed_out("read"))?
        .map_err(Error::kube(KubeStep::Get, &object))?;
    let now = Timestamp::now();
    let decision = decide(current.as_ref(), &config.identity, seen, Instant::now());
    let write = async {
        match decision {
            Decision::Wait(left) => Ok(Some(left)),
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(config.name.clone()),
                        namespace: Some(config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(lease_spec(config, None, now)),
                };
                api.create(&PostParams::default(), &lease)
                    .await
                    .map(|_| None)
            }
            Decision::TakeOver | Decision::Renew => {
                let Some(mut lease) = current else {
                    return Ok(Some(config.renew_every));
                };
                lease.spec = Some(lease_spec(config, lease.spec.as_ref(), now));
                // `replace` sends the resourceVersion we read: a racing writer makes it fail
                // with 409.
                api.replace(&config.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| None)
            }
        }
    };
    match tokio::time::timeout(config.request_timeout, write)
        .await
        .map_err(|_| timed_out("write"))?
    {
        Ok(outcome) => Ok(outcome),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Some(config.renew_every)),
        Err(source) => Err(Error::Kube {
            step: KubeStep::Apply,
            object,
            source,
        }),
    }
}

/// Waits until this replica holds the lease; returns when the winning request was sent (the
/// leader's deadline counts from there).
pub async fn acquire(client: &Client, config: &LeaseConfig) -> Result<Instant> {
    let mut seen = None;
    loop {
        let sent = Instant::now();
        match try_acquire(client, config, &mut seen).await {
            Ok(None) => return Ok(sent),
            Ok(Some(wait)) => {
                tracing::debug!(lease = %config.name, wait_ms = wait.as_millis() as u64, "another replica leads");
                tokio::time::sleep(wait.min(config.renew_every)).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the leader lease; retrying");
                tokio::time::sleep(config.renew_every).await;
            }
        }
    }
}

/// Renews the lease until it cannot: returns `LostLease` when another replica took it, or
/// when `renew_deadline` has passed since the last successful renewal was sent (before the
/// lease can expire for anyone else). Acquired at `renewed`.
pub async fn hold(client: &Client, config: &LeaseConfig, renewed: Instant) -> Error {
    let mut renewed = renewed;
    loop {
        tokio::time::sleep(config.renew_every).await;
        let deadline = renewed + config.renew_deadline;
        let sent = Instant::now();
        if sent >= deadline {
            break;
        }
        let attempt =
            tokio::time::timeout(deadline - sent, try_acquire(client, config, &mut None)).await;
        match attempt {
            Ok(Ok(None)) => renewed = sent,
            Ok(Ok(Some(_))) => break,
            Ok(Err(err)) => tracing::warn!(error = %err, "cannot renew the leader lease"),
            Err(_) => {
                tracing::warn!("renewing the leader lease did not finish before its deadline")
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Error::LostLease {
        lease: format!("{}/{}", config.namespace, config.name),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_lease_timing_keeps_the_deadline_between_a_renewal_and_the_duration() {
        let base = || LeaseConfig::with_defaults("ns".into(), "lease".into(), "me".into());
        let ok = base()
            .with_timing(Duration::from_secs(40), Duration::from_secs(30))
            .expect("a 30 s deadline in a 40 s lease");
        assert_eq!(
            (ok.duration, ok.renew_deadline),
            (Duration::from_secs(40), Duration::from_secs(30))
        );
        for (duration, deadline) in [(15, 15), (15, 20), (15, 4), (15, 3)] {
            let err = base()
                .with_timing(Duration::from_secs(duration), Duration::from_secs(deadline))
                .expect_err("refused");
            let message = err.to_string();
            assert!(
                message.contains("--lease-renew-deadline-seconds")
                    && message.contains("lower the deadline or raise the duration"),
                "{message}"
            );
        }
    }

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

    #[test]
    fn no_lease_is_created() {
        assert_eq!(
            decide(None, "me", &mut None, Instant::now()),
            Decision::Create
        );
    }

    #[test]
    fn our_own_lease_is_renewed() {
        let ours = lease("me", "2026-01-01T00:00:00Z", 15);
        assert_eq!(
            decide(Some(&ours), "me", &mut None, Instant::now()),
            Decision::Renew
        );
    }

    #[test]
    fn a_foreign_lease_expires_by_our_clock_only_after_a_whole_duration_unchanged() {
        let start = Instant::now();
        let mut seen = None;
        // Its renewTime is years old by our clock: that alone proves nothing (clocks differ).
        let other = lease("other", "2020-01-01T00:00:00Z", 15);
        assert_eq!(
            decide(Some(&other), "me", &mut seen, start),
            Decision::Wait(Duration::from_secs(15))
        );
        assert_eq!(
            decide(
                Some(&other),
                "me",
                &mut seen,
                start + Duration::from_secs(10)
            ),
            Decision::Wait(Duration::from_secs(5))
        );
        // A renewal (new renewTime) starts the count again.
        let renewed = lease("other", "2020-01-01T00:00:12Z", 15);
        assert_eq!(
            decide(
                Some(&renewed),
                "me",
                &mut seen,
                start + Duration::from_secs(12)
            ),
            Decision::Wait(Duration::from_secs(15))
        );
        assert_eq!(
            decide(
                Some(&renewed),
                "me",
                &mut seen,
                start + Duration::from_secs(27)
            ),
            Decision::TakeOver
        );
    }

    #[test]
    fn an_unheld_lease_is_taken_over() {
        assert_eq!(
            decide(
                Some(&lease("", "2026-01-01T00:00:00Z", 15)),
                "me",
                &mut None,
                Instant::now()
            ),
            Decision::TakeOver
        );
    }

    fn config() -> LeaseConfig {
        LeaseConfig {
            renew_every: Duration::from_secs(5),
            ..LeaseConfig::with_defaults(
                "bondnet-system".into(),
                "bondnet-controller".into(),
                "me".into(),
            )
        }
    }

    const PATH: &str =
        "/apis/coordination.k8s.io/v1/namespaces/bondnet-system/leases/bondnet-controller";

    #[tokio::test]
    async fn a_missing_lease_is_created_with_us_as_holder() {
        let (client, mut server) = mock::client();
        let task = tokio::spawn(async move { try_acquire(&client, &config(), &mut None).await });
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
        let expired = lease("other", "2020-01-01T00:00:00Z", 15);
        // We have seen this very record for 20 s on our own clock.
        let since = Instant::now()
            .checked_sub(Duration::from_secs(20))
            .expect("the clock has run for 20 s");
        let mut seen = Some(Observation {
            record: record_of(&expired, expired.spec.as_ref().expect("spec")),
            since,
        });
        let task = tokio::spawn(async move { try_acquire(&client, &config(), &mut seen).await });
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

    /// The timing scaled down: 2 s leases, renewed every 200 ms, given up after 1 s.
    fn quick(identity: &str) -> LeaseConfig {
        LeaseConfig {
            duration: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(1),
            renew_every: Duration::from_millis(200),
            request_timeout: Duration::from_millis(200),
            ..LeaseConfig::with_defaults(
                "bondnet-system".into(),
                "bondnet-controller".into(),
                identity.into(),
            )
        }
    }

    #[tokio::test]
    async fn a_partitioned_leader_stops_writing_before_the_follower_takes_over() {
        let renewed = Instant::now();
        // The leader renewed at `renewed`, then lost the API server: nothing answers it.
        let (leader_client, _partitioned) = mock::client();
        let leader = tokio::spawn(async move {
            let lost = hold(&leader_client, &quick("leader"), renewed).await;
            (Instant::now(), lost)
        });
        // The follower reads that renewal's record, unchanged, on every try.
        let (follower_client, mut server) = mock::client();
        let follower =
            tokio::spawn(async move { acquire(&follower_client, &quick("follower")).await });
        let held = serde_json::to_value(lease("leader", "2026-01-01T00:00:00Z", 2)).expect("json");
        let took_over = loop {
            let seen = server
                .expect_any(|method, _, body| {
                    if method == Method::GET {
                        (StatusCode::OK, held.clone())
                    } else {
                        (StatusCode::OK, body.clone())
                    }
                })
                .await;
            if seen.method == Method::PUT {
                assert_eq!(seen.body["spec"]["holderIdentity"], "follower");
                break Instant::now();
            }
        };
        let (stopped, lost) = leader.await.expect("leader task");
        assert!(matches!(lost, Error::LostLease { .. }), "{lost}");
        follower.await.expect("follower task").expect("acquired");
        assert!(
            stopped < took_over,
            "the leader stopped {:?} after its renewal, the follower took over {:?} after it",
            stopped - renewed,
            took_over - renewed
        );
        assert!(
            stopped - renewed < Duration::from_millis(1500),
            "{:?}",
            stopped - renewed
        );
        assert!(
            took_over - renewed >= Duration::from_secs(2),
            "{:?}",
            took_over - renewed
        );
    }
}
