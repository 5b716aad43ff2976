//! The status the controller writes: the plan's status with condition times filled in, and
//! the Events worth raising when a network's readiness changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::{Event, EventType};

use crate::api::bond_network::BondNetworkStatus;

/// `planned` with each condition's `lastTransitionTime` kept from `old` when its status did
/// not change, and `now` otherwise.
pub fn with_transition_times(
    mut planned: BondNetworkStatus,
    old: Option<&BondNetworkStatus>,
    now: &Time,
) -> BondNetworkStatus {
    for condition in &mut planned.conditions {
        let previous = old.and_then(|o| o.conditions.iter().find(|c| c.type_ == condition.type_));
        condition.last_transition_time = match previous {
            Some(p) if p.status == condition.status => {
                p.last_transition_time.clone().or_else(|| Some(now.clone()))
            }
            _ => Some(now.clone()),
        };
    }
    planned
}

/// The Event to raise when `Ready` changes (status or reason), if any.
pub fn readiness_event(new: &BondNetworkStatus, old: Option<&BondNetworkStatus>) -> Option<Event> {
    let ready = new.conditions.iter().find(|c| c.type_ == "Ready")?;
    let before = old.and_then(|o| o.conditions.iter().find(|c| c.type_ == "Ready"));
    if before.is_some_and(|b| b.status == ready.status && b.reason == ready.reason) {
        return None;
    }
    Some(Event {
        type_: if ready.status == "True" {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: ready.reason.clone(),
        note: Some(truncate(&ready.message, 1000)),
        action: "Plan".to_owned(),
        secondary: None,
    })
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::bond_network::BondNetworkCondition;

    fn status(ready: &str, reason: &str, at: Option<Time>) -> BondNetworkStatus {
        BondNetworkStatus {
            conditions: vec![BondNetworkCondition {
                type_: "Ready".into(),
                status: ready.into(),
                reason: reason.into(),
                message: "m".into(),
                last_transition_time: at,
                observed_generation: None,
            }],
            ..BondNetworkStatus::default()
        }
    }

    fn time(s: &str) -> Time {
        Time(s.parse().expect("timestamp"))
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time() {
        let old = status("True", "Planned", Some(time("2026-01-01T00:00:00Z")));
        let new = with_transition_times(
            status("True", "Planned", None),
            Some(&old),
            &time("2026-02-01T00:00:00Z"),
        );
        assert_eq!(
            new.conditions[0].last_transition_time,
            Some(time("2026-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn a_changed_condition_gets_now() {
        let old = status("True", "Planned", Some(time("2026-01-01T00:00:00Z")));
        let now = time("2026-02-01T00:00:00Z");
        let new = with_transition_times(status("False", "NoEligibleNode", None), Some(&old), &now);
        assert_eq!(new.conditions[0].last_transition_time, Some(now));
    }

    #[test]
    fn events_are_raised_only_when_readiness_changes() {
        let ready = status("True", "Planned", None);
        let event = readiness_event(&ready, None).expect("first plan");
        assert_eq!(event.type_, EventType::Normal);
        assert!(readiness_event(&ready, Some(&ready)).is_none());
        let broken = status("False", "NoEligibleNode", None);
        assert_eq!(
            readiness_event(&broken, Some(&ready))
                .expect("changed")
                .type_,
            EventType::Warning
        );
    }
}
