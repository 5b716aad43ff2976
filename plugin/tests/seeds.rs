//! Every configuration from the upstream plugin's documentation (the seeds, kept under
//! tests/fixtures/upstream) parses unchanged, with the meaning upstream gives it.

use std::fs;
use std::path::PathBuf;

use bond_cni::bond::{BondMode, FailOverMac};
use bond_cni::config;

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/upstream");
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).expect("read fixture"),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_upstream_config_parses() {
    let all = fixtures();
    assert!(all.len() >= 7, "fixtures missing: {}", all.len());
    for (name, bytes) in all {
        let conf = config::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(conf.links.len() >= 2, "{name}");
        assert!(conf.bond.options.miimon == Some(100), "{name}: miimon");
    }
}

#[test]
fn the_sriov_failover_example_means_what_upstream_means() {
    let (_, bytes) = fixtures()
        .into_iter()
        .find(|(n, _)| n == "sriov-failover-bond-net1.json")
        .expect("fixture");
    let conf = config::parse(&bytes).expect("parses");
    assert_eq!(conf.bond.mode, BondMode::ActiveBackup);
    assert_eq!(conf.bond.options.fail_over_mac, Some(FailOverMac::Active));
    assert!(conf.links_in_container);
    assert_eq!(conf.links, vec!["net1", "net2"]);
    assert_eq!(conf.ipam_type(), Some("host-local"));
    assert_eq!(
        conf.mtu, None,
        "no mtu: the bond takes the smallest port MTU"
    );
    assert_eq!(conf.cni_version.as_str(), "0.3.1");
}

#[test]
fn host_links_default_when_links_in_container_is_omitted() {
    let (_, bytes) = fixtures()
        .into_iter()
        .find(|(n, _)| n == "starlingx-host-links-calico.json")
        .expect("fixture");
    let conf = config::parse(&bytes).expect("parses");
    assert!(!conf.links_in_container);
    assert_eq!(conf.ipam_type(), Some("calico-ipam"));
}
