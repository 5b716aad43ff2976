//! Sample values per option for the contract tests that compare the API server, `bondnet plan`
//! and the plugin (the operator's property test and the real API server's dry-run table). One
//! table, so both tiers try the same specs.

use serde_json::{json, Value};

use crate::options::OPTIONS;

/// Values per option in the BondNetwork's own types: valid ones and ones that some mode or
/// cross-field rule refuses. Ports are `bond0p0`, `bond0p1`, ... (two by default), so `primary`
/// gets one that is a port, one that is not, and a host-style name.
pub fn values() -> Vec<(&'static str, Vec<Value>)> {
    vec![
        ("miimon", vec![json!(0), json!(100), json!(150)]),
        ("failOverMac", vec![json!(0), json!(1), json!(2)]),
        ("allSlavesActive", vec![json!(0), json!(1)]),
        ("tlbDynamicLb", vec![json!(0), json!(1)]),
        ("xmitHashPolicy", vec![json!("layer2"), json!("layer3+4")]),
        ("lacpRate", vec![json!("fast")]),
        ("adSelect", vec![json!("count")]),
        ("minLinks", vec![json!(1), json!(3)]),
        (
            "primary",
            vec![json!("bond0p1"), json!("bond0p5"), json!("eth0")],
        ),
        ("primaryReselect", vec![json!("better")]),
        ("updelay", vec![json!(0), json!(200), json!(150)]),
        ("downdelay", vec![json!(300), json!(50)]),
        ("arpInterval", vec![json!(0), json!(100)]),
        ("arpIpTargets", vec![json!(["10.0.0.1"]), json!([])]),
        ("arpValidate", vec![json!("all")]),
        ("arpAllTargets", vec![json!("any")]),
        ("numPeerNotif", vec![json!(3)]),
        ("resendIgmp", vec![json!(2)]),
        ("packetsPerSlave", vec![json!(4)]),
        ("lpInterval", vec![json!(2)]),
    ]
}

/// Values the CRD's structural schema refuses before any CEL rule runs, derived from the
/// option table: a number just outside the option's range, a word that is no value of it, a
/// list one entry too long, a list entry that is no IPv4 address (`format: ipv4`). The server
/// answers with a schema error naming the field, and the reader (`bondnet plan`, the plugin)
/// refuses them too.
pub fn schema_invalid() -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    for o in OPTIONS {
        if o.is_list {
            // The one list option is arpIpTargets, a list of IPv4 addresses.
            let targets: Vec<String> = (0..=o.max).map(|i| format!("10.0.1.{}", i + 1)).collect();
            out.push((o.name, json!(targets)));
            out.push((o.name, json!(["10.0.0"])));
        } else if o.name != "primary" {
            // Any interface name passes the schema; the rules judge `primary`.
            out.push((o.name, json!("no-such-value")));
            if o.min > 0 {
                out.push((o.name, json!(o.min - 1)));
            }
            out.push((o.name, json!(o.max + 1)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_of_the_table_has_sample_values() {
        let here: Vec<&str> = values().iter().map(|(n, _)| *n).collect();
        for o in OPTIONS {
            assert!(here.contains(&o.name), "{} has no values here", o.name);
        }
    }

    #[test]
    fn every_schema_invalid_value_is_refused_by_the_reader() {
        let invalid = schema_invalid();
        assert!(invalid.len() >= OPTIONS.len() - 1, "{invalid:?}");
        for (name, value) in invalid {
            let map = serde_json::Map::from_iter([(name.to_owned(), value.clone())]);
            let err = crate::BondOptions::from_map(&map)
                .expect_err(&format!("{name}: {value} must be refused"));
            assert_eq!(err.field, name, "{err}");
        }
    }

    #[test]
    fn a_malformed_arp_target_is_among_the_schema_invalid_values() {
        let malformed = schema_invalid()
            .into_iter()
            .filter(|(name, _)| *name == "arpIpTargets")
            .filter_map(|(_, v)| v.as_array().cloned())
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .filter(|t| t.parse::<std::net::Ipv4Addr>().is_err())
            .collect::<Vec<_>>();
        assert_eq!(malformed, ["10.0.0"]);
    }
}
