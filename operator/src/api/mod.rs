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

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

/// The CRDs bondnet installs, in a fixed order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![BondNetwork::crd(), BondNodeState::crd()];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                drop_unknown_formats(schema);
            }
        }
    }
    crds
}

/// Formats the API server knows (k8s.io/kube-openapi's strfmt registry, plus the integer
/// and number widths of OpenAPI). schemars writes `uint32` and the like for Rust's unsigned
/// integers, which makes every `kubectl apply` of the CRDs warn. Public so that a test can
/// hold the checked-in CRDs to it.
pub const KNOWN_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "binary",
    "date",
    "date-time",
    "password",
    "bsonobjectid",
    "creditcard",
    "duration",
    "email",
    "hexcolor",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "isbn",
    "isbn10",
    "isbn13",
    "mac",
    "rgbcolor",
    "ssn",
    "uri",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
];

fn drop_unknown_formats(schema: &mut JSONSchemaProps) {
    if schema
        .format
        .as_deref()
        .is_some_and(|f| !KNOWN_FORMATS.contains(&f))
    {
        schema.format = None;
    }
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(
            schema
                .additional_properties
                .iter_mut()
                .filter_map(|a| match a {
                    JSONSchemaPropsOrBool::Schema(s) => Some(s.as_mut()),
                    JSONSchemaPropsOrBool::Bool(_) => None,
                }),
        )
        .chain(schema.items.iter_mut().flat_map(|i| match i {
            JSONSchemaPropsOrArray::Schema(s) => vec![s.as_mut()],
            JSONSchemaPropsOrArray::Schemas(v) => v.iter_mut().collect(),
        }))
        .chain(
            [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of]
                .into_iter()
                .flat_map(|l| l.iter_mut().flatten()),
        );
    for child in children {
        drop_unknown_formats(child);
    }
}
