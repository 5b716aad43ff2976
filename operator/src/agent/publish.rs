//! Publishing the node's BondNodeState by server-side apply, under the agent's own field
//! manager (the controller owns the spec). The status is applied first; only when the object
//! does not exist yet is it created (empty spec) and the status applied again, so a change
//! costs one request.

use kube::api::{Api, Patch, PatchParams};

use crate::api::bond_node_state::{BondNodeState, BondNodeStateStatus};
use crate::api::keys;

/// Applies `status` to the BondNodeState named `node`, creating it when missing.
pub async fn publish_node_state(
    api: &Api<BondNodeState>,
    node: &str,
    status: &BondNodeStateStatus,
) -> Result<(), kube::Error> {
    let params = PatchParams::apply(keys::AGENT_FIELD_MANAGER).force();
    let api_version = format!("{}/{}", keys::GROUP, keys::VERSION);
    let status_patch = serde_json::json!({
        "apiVersion": api_version,
        "kind": "BondNodeState",
        "metadata": { "name": node },
        "status": status,
    });
    match api
        .patch_status(node, &params, &Patch::Apply(&status_patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            let object = serde_json::json!({
                "apiVersion": api_version,
                "kind": "BondNodeState",
                "metadata": { "name": node },
                "spec": {},
            });
            api.patch(node, &params, &Patch::Apply(&object)).await?;
            api.patch_status(node, &params, &Patch::Apply(&status_patch))
                .await?;
            Ok(())
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::e810_pf;
    use crate::mock::{self, status_error};
    use http::{Method, StatusCode};

    const PATH: &str = "/apis/bondnet.io/v1alpha1/bondnodestates/node-1";

    fn status() -> BondNodeStateStatus {
        BondNodeStateStatus {
            pfs: vec![e810_pf("ens1f0", "0000:3b:00", 0, 8)],
            plugin_version: Some("0.1.0".into()),
            last_seen: None,
        }
    }

    #[tokio::test]
    async fn an_existing_node_state_gets_one_status_apply() {
        let (client, mut server) = mock::client();
        let api = Api::<BondNodeState>::all(client);
        let status = status();
        let task = tokio::spawn(async move { publish_node_state(&api, "node-1", &status).await });
        let seen = server
            .expect(
                Method::PATCH,
                &format!("{PATH}/status"),
                StatusCode::OK,
                serde_json::json!({
                    "apiVersion": "bondnet.io/v1alpha1", "kind": "BondNodeState",
                    "metadata": {"name": "node-1"}, "spec": {}
                }),
            )
            .await;
        assert!(
            seen.uri.contains("fieldManager=bondnet-agent"),
            "{}",
            seen.uri
        );
        assert!(seen.uri.contains("force=true"), "{}", seen.uri);
        assert_eq!(seen.body["status"]["pfs"][0]["pciAddress"], "0000:3b:00.0");
        assert_eq!(seen.body["status"]["pfs"][0]["nicId"], "0000:3b:00");
        assert_eq!(seen.body["status"]["pluginVersion"], "0.1.0");
        task.await.expect("task").expect("published");
        server.expect_no_more().await;
    }

    #[tokio::test]
    async fn a_missing_node_state_is_created_then_its_status_applied() {
        let (client, mut server) = mock::client();
        let api = Api::<BondNodeState>::all(client);
        let status = status();
        let task = tokio::spawn(async move { publish_node_state(&api, "node-1", &status).await });
        let object = serde_json::json!({
            "apiVersion": "bondnet.io/v1alpha1", "kind": "BondNodeState",
            "metadata": {"name": "node-1"}, "spec": {}
        });
        server
            .expect(
                Method::PATCH,
                &format!("{PATH}/status"),
                StatusCode::NOT_FOUND,
                status_error(404, "NotFound", "not found"),
            )
            .await;
        let create = server
            .expect(Method::PATCH, PATH, StatusCode::CREATED, object.clone())
            .await;
        assert_eq!(create.body["spec"], serde_json::json!({}));
        assert!(create.body.get("status").is_none());
        server
            .expect(
                Method::PATCH,
                &format!("{PATH}/status"),
                StatusCode::OK,
                object,
            )
            .await;
        task.await.expect("task").expect("published");
    }

    #[tokio::test]
    async fn other_api_errors_are_returned() {
        let (client, mut server) = mock::client();
        let api = Api::<BondNodeState>::all(client);
        let status = status();
        let task = tokio::spawn(async move { publish_node_state(&api, "node-1", &status).await });
        server
            .expect(
                Method::PATCH,
                &format!("{PATH}/status"),
                StatusCode::FORBIDDEN,
                status_error(403, "Forbidden", "no RBAC"),
            )
            .await;
        let err = task.await.expect("task").expect_err("forbidden");
        assert!(err.to_string().contains("no RBAC"), "{err}");
        server.expect_no_more().await;
    }
}
