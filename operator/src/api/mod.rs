//! The API types, and nothing else: serde and schemars shapes of bondnet's resources and of
//! the foreign objects it writes (NADs, the SR-IOV device plugin's config).

pub mod bond_network;
pub mod bond_node_state;
pub mod device_plugin;
pub mod keys;
pub mod nad;

pub use bond_network::{BondNetwork, BondNetworkSpec, BondNetworkStatus};
pub use bond_node_state::{BondNodeState, BondNodeStateStatus, PfStatus};
pub use nad::NetworkAttachmentDefinition;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CRDs bondnet installs, in a fixed order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![BondNetwork::crd(), BondNodeState::crd()]
}
