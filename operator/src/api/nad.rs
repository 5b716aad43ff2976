//! Multus' `NetworkAttachmentDefinition` (`k8s.cni.cncf.io/v1`), which bondnet writes but
//! does not install: its CRD comes with Multus.

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// A NAD's spec: the CNI config as a JSON string.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[kube(
    group = "k8s.cni.cncf.io",
    version = "v1",
    kind = "NetworkAttachmentDefinition",
    plural = "network-attachment-definitions",
    namespaced,
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
pub struct NetworkAttachmentDefinitionSpec {
    /// CNI configuration JSON.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
}
