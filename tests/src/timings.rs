//! The plugin's own phase timings: with `BONDNET_TIMINGS=1` the `bond` binary writes one
//! line `{"bondnet_timings_us":{"total":N,"netlink":N,"ipam":N,"steps":[[NAME,N],...]}}` to
//! stderr at exit: microseconds, and every step of the call in order (runtime setup, config
//! parse, lock, netns entry, each netlink request, the state file, IPAM delegation).

use serde::Deserialize;

/// Microseconds spent in one plugin call, as the plugin measured them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PluginTimings {
    pub total: u64,
    pub netlink: u64,
    pub ipam: u64,
    /// (step, microseconds), in the order the call took them.
    #[serde(default)]
    pub steps: Vec<(String, u64)>,
}

#[derive(Deserialize)]
struct Line {
    bondnet_timings_us: PluginTimings,
}

/// The timings line in a call's stderr (the last one, if several), or `None`.
pub fn parse_plugin_timings(stderr: &str) -> Option<PluginTimings> {
    stderr
        .lines()
        .rev()
        .filter(|l| l.contains("bondnet_timings_us"))
        .find_map(|l| serde_json::from_str::<Line>(l.trim()).ok())
        .map(|l| l.bondnet_timings_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_timings_line_among_logs() {
        let err = "2026-11-23T14:56:03Z WARN something\n\
                   {\"bondnet_timings_us\":{\"total\":1500,\"netlink\":900,\"ipam\":400,\
                   \"steps\":[[\"config parse\",20],[\"netlink get link (pod)\",35]]}}\n";
        assert_eq!(
            parse_plugin_timings(err),
            Some(PluginTimings {
                total: 1500,
                netlink: 900,
                ipam: 400,
                steps: vec![
                    ("config parse".to_string(), 20),
                    ("netlink get link (pod)".to_string(), 35)
                ],
            })
        );
        // A line from before the steps were printed still parses.
        let old = "{\"bondnet_timings_us\":{\"total\":3,\"netlink\":2,\"ipam\":1}}";
        assert_eq!(parse_plugin_timings(old).map(|t| t.steps.len()), Some(0));
    }

    #[test]
    fn no_line_or_a_broken_line_is_none() {
        assert_eq!(parse_plugin_timings(""), None);
        assert_eq!(
            parse_plugin_timings("{\"bondnet_timings_us\":{\"total\":1}}"),
            None
        );
    }
}
