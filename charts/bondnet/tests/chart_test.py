#!/usr/bin/env python3
"""Chart tests with the real Helm engine (helm-sdkpy): lint, schema, and every rendered object,
the RBAC compared with permissions.yaml rule by rule.

Helm's library renders only inside an install, so the install runs against a small in-process
fake API server that answers discovery and accepts every object; the manifest Helm rendered is
then read from the release it returns. Run: python3 chart_test.py (prints "N passed, N failed").
"""
import asyncio
import json
import pathlib
import re
import shutil
import sys
import tempfile
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import helm_sdkpy
    import yaml
except ImportError as err:
    sys.exit(f"FAILED: {err}; install with: pip install --ignore-requires-python helm-sdkpy pyyaml")

CHART = pathlib.Path(__file__).resolve().parent.parent
REPO = CHART.parent.parent
NAMESPACE = "bondnet-system"
RELEASE = "bondnet"

# === a fake API server, just enough for `helm install` ===

RESOURCES = {
    "v1": [("secrets", "Secret", True), ("configmaps", "ConfigMap", True), ("services", "Service", True),
           ("serviceaccounts", "ServiceAccount", True), ("namespaces", "Namespace", False), ("pods", "Pod", True)],
    "apps/v1": [("deployments", "Deployment", True), ("daemonsets", "DaemonSet", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "rbac.authorization.k8s.io/v1": [("clusterroles", "ClusterRole", False), ("clusterrolebindings", "ClusterRoleBinding", False),
                                     ("roles", "Role", True), ("rolebindings", "RoleBinding", True)],
    "admissionregistration.k8s.io/v1": [("mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False)],
    "apiextensions.k8s.io/v1": [("customresourcedefinitions", "CustomResourceDefinition", False)],
    "cert-manager.io/v1": [("issuers", "Issuer", True), ("certificates", "Certificate", True)],
    "bondnet.io/v1alpha1": [("bondnetworks", "BondNetwork", True), ("bondnodestates", "BondNodeState", False)],
}


class FakeApi(BaseHTTPRequestHandler):
    store = {}

    def log_message(self, *args):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/version":
            return self.reply(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"})
        if path == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"],
                                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
        if path == "/apis":
            groups = []
            for gv in RESOURCES:
                if gv != "v1":
                    group, version = gv.split("/")
                    entry = {"groupVersion": gv, "version": version}
                    groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        for gv, resources in RESOURCES.items():
            if path == ("/api/v1" if gv == "v1" else "/apis/" + gv):
                return self.reply(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
                    {"name": n, "singularName": k.lower(), "namespaced": ns, "kind": k,
                     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]} for n, k, ns in resources]})
        if path in self.store:
            return self.reply(200, self.store[path])
        if path.endswith("/secrets") or path.endswith("/configmaps"):
            return self.reply(200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []})
        return self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

    def body(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}"
        try:
            return json.loads(raw)
        except ValueError:
            # Typed clients (Helm's release Secret) send protobuf; its content is not checked.
            return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"release-{len(self.store)}"}}

    def do_POST(self):
        obj = self.body()
        obj.setdefault("metadata", {}).update(resourceVersion="1", uid="uid")
        if obj.get("kind") == "CustomResourceDefinition":
            obj["status"] = {"conditions": [{"type": "Established", "status": "True"}, {"type": "NamesAccepted", "status": "True"}],
                             "acceptedNames": obj["spec"]["names"]}
        self.store[self.path.split("?")[0] + "/" + obj["metadata"]["name"]] = obj
        self.reply(201, obj)

    def do_PUT(self):
        obj = self.body()
        self.store[self.path.split("?")[0]] = obj
        self.reply(200, obj)

    def do_PATCH(self):
        self.reply(200, self.store.get(self.path.split("?")[0], {}))

    def do_DELETE(self):
        self.reply(200, {"kind": "Status", "status": "Success"})


def render(values=None):
    """Installs the chart into a fresh fake API server; returns the rendered objects."""
    FakeApi.store = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = pathlib.Path(tmp) / "kubeconfig"
            kubeconfig.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": NAMESPACE}}],
            }))
            config = helm_sdkpy.Configuration(namespace=NAMESPACE, kubeconfig=str(kubeconfig))
            release = asyncio.run(helm_sdkpy.Install(config).run(RELEASE, str(CHART), values=values, wait=False, timeout=60))
    finally:
        server.shutdown()
    return [o for o in yaml.safe_load_all(release["manifest"]) if o], release


def find(objects, kind, name_suffix=""):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    assert found, f"no {kind} named *{name_suffix} in {[(o['kind'], o['metadata']['name']) for o in objects]}"
    return found[0]


# === RBAC: rendered grants versus permissions.yaml ===

def granted(objects):
    """(component, scope, group, resource, verb, resourceName) for every rule bound to a bondnet ServiceAccount."""
    roles = {(o["kind"], o["metadata"]["name"]): o for o in objects if o["kind"] in ("ClusterRole", "Role")}
    out = set()
    for binding in (o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")):
        role = roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]
        scope = "cluster" if role["kind"] == "ClusterRole" else "namespace"
        for subject in binding["subjects"]:
            component = subject["name"].rsplit("-", 1)[1]
            for rule in role["rules"]:
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        for verb in rule["verbs"]:
                            for name in rule.get("resourceNames", [None]):
                                out.add((component, scope, group, resource, verb, name))
    return out


def expected(settings):
    table = yaml.safe_load((CHART / "tests" / "permissions.yaml").read_text())
    out = set()
    for component, rules in table.items():
        for rule in rules:
            if rule.get("when") and rule["when"] not in settings:
                continue
            names = [n.replace("WEBHOOK", f"{RELEASE}-webhook") for n in rule.get("resourceNames", [None]) if n] or [None]
            for verb in rule["verbs"]:
                for name in names:
                    out.add((component, rule["scope"], rule["group"], rule["resource"], verb, name))
    return out


def assert_rbac(objects, settings):
    have, want = granted(objects), expected(settings)
    assert have == want, f"RBAC differs from permissions.yaml:\n  granted but unused: {sorted(have - want, key=str)}\n  used but not granted: {sorted(want - have, key=str)}"


# === tests ===

def test_lint_is_clean():
    result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration(namespace=NAMESPACE)).run(str(CHART)))
    problems = [m for m in result.get("Messages") or [] if m.get("Severity", 0) >= 2]
    assert not result.get("Errors") and not problems, json.dumps(result, indent=1)


def test_lint_catches_a_broken_template():
    with tempfile.TemporaryDirectory() as tmp:
        broken = pathlib.Path(tmp) / "bondnet"
        shutil.copytree(CHART, broken)
        (broken / "templates" / "broken.yaml").write_text("{{ .Values.nope.deeper }}\n")
        try:
            result = asyncio.run(helm_sdkpy.Lint(helm_sdkpy.Configuration(namespace=NAMESPACE)).run(str(broken)))
        except helm_sdkpy.HelmError:
            return
        assert any(m.get("Severity", 0) >= 3 for m in result.get("Messages") or []), result


def test_the_schema_refuses_a_wrong_failure_policy():
    try:
        render({"webhook": {"failurePolicy": "Sometimes"}})
    except helm_sdkpy.HelmError as err:
        assert "failurePolicy" in str(err), err
        return
    raise AssertionError("webhook.failurePolicy=Sometimes was accepted")


def test_the_chart_crds_are_the_generated_crds():
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        assert (CHART / "crds" / crd.name).read_text() == crd.read_text(), f"charts/bondnet/crds/{crd.name} is stale: copy crds/{crd.name}"
    assert sorted(p.name for p in (CHART / "crds").glob("*.yaml")) == sorted(p.name for p in (REPO / "crds").glob("*.yaml"))


def test_default_install_renders_every_component_with_least_privilege():
    objects, release = render()
    assert "kubectl get bondnodestates" in release.get("info", {}).get("notes", ""), release.get("info")
    kinds = sorted(o["kind"] for o in objects)
    assert kinds.count("Deployment") == 2 and kinds.count("DaemonSet") == 1, kinds

    controller = find(objects, "Deployment", "-controller")
    assert controller["spec"]["replicas"] == 2
    env = {e["name"]: e for e in controller["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["BONDNET_DEVICE_PLUGIN_NAMESPACE"]["value"] == NAMESPACE
    assert "BONDNET_DEVICE_PLUGIN_SELECTOR" not in env
    assert "BONDNET_DEVICE_PLUGIN_CONFIGMAP_EXPORT" not in env

    agent = find(objects, "DaemonSet", "-agent")["spec"]["template"]["spec"]
    container = agent["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["sys"]["readOnly"] is True and mounts["sys"]["mountPath"] == env["BONDNET_SYSFS_ROOT"]["value"] + "/sys"
    assert mounts["cni-bin"]["mountPath"] == env["BONDNET_CNI_BIN_DIR"]["value"]
    assert not mounts["cni-bin"].get("readOnly")
    security = container["securityContext"]
    assert security["capabilities"]["drop"] == ["ALL"] and not security.get("privileged")
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert not agent.get("hostNetwork") and not agent.get("hostPID")
    hosts = {v["name"]: v["hostPath"]["path"] for v in agent["volumes"]}
    assert hosts == {"sys": "/sys", "cni-bin": "/opt/cni/bin", "device-plugin": "/var/lib/bondnet/device-plugin"}, hosts
    assert env["BONDNET_DEVICE_PLUGIN_CONFIG_FILE"]["value"].startswith(mounts["device-plugin"]["mountPath"] + "/")
    assert "BONDNET_DEVICE_PLUGIN_SELECTOR" not in env

    webhook = find(objects, "MutatingWebhookConfiguration")["webhooks"][0]
    assert webhook["failurePolicy"] == "Fail" and webhook["sideEffects"] == "None"
    assert webhook["rules"][0]["operations"] == ["CREATE"] and webhook["rules"][0]["resources"] == ["pods"]
    # Only pods that name a network are sent; the expression is the file the Rust tests evaluate.
    expression = (CHART / "webhook-match-condition.cel").read_text().strip()
    assert webhook["matchConditions"] == [{"name": "names-a-network", "expression": expression}], webhook.get("matchConditions")
    assert "'k8s.v1.cni.cncf.io/networks' in object.metadata.annotations" in expression, expression
    excluded = webhook["namespaceSelector"]["matchExpressions"][0]
    assert excluded["key"] == "kubernetes.io/metadata.name" and excluded["operator"] == "NotIn"
    assert {"kube-system", NAMESPACE} <= set(excluded["values"]), excluded
    instance = webhook["objectSelector"]["matchExpressions"][0]
    assert instance == {"key": "app.kubernetes.io/instance", "operator": "NotIn", "values": [RELEASE]}
    assert webhook["clientConfig"]["service"]["name"] == find(objects, "Service")["metadata"]["name"]
    budget = find(objects, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == find(objects, "Deployment", "-webhook")["spec"]["selector"]["matchLabels"]
    webhook_env = {e["name"]: e.get("value") for e in find(objects, "Deployment", "-webhook")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert webhook_env["BONDNET_WEBHOOK_CONFIGURATION"] == find(objects, "MutatingWebhookConfiguration")["metadata"]["name"]
    webhook_container = find(objects, "Deployment", "-webhook")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in webhook_container["ports"]}
    assert webhook_env["BONDNET_WEBHOOK_METRICS_ADDRESS"] == f"0.0.0.0:{ports['metrics']}", (webhook_env, ports)
    assert ports["metrics"] != ports["https"], ports

    for o in objects:
        text = json.dumps(o)
        assert not re.search(r'"image": "[^"/]*\.[^"/]*/', text), f"{o['kind']} names a registry host"
    assert_rbac(objects, {"selfManagedTls"})


def test_cert_manager_and_the_device_plugin_change_only_what_they_need():
    objects, _ = render({
        "certManager": {"enabled": True},
        "devicePlugin": {"enabled": True},
        "webhook": {"failurePolicy": "Ignore", "excludeNamespaces": ["legacy"]},
    })
    find(objects, "Certificate")
    configuration = find(objects, "MutatingWebhookConfiguration")
    assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{RELEASE}-webhook"
    assert configuration["webhooks"][0]["failurePolicy"] == "Ignore"
    assert "legacy" in configuration["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"]
    env = {e["name"]: e.get("value") for e in find(objects, "Deployment", "-webhook")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BONDNET_WEBHOOK_TLS_CERT_FILE"] == "/tls/tls.crt" and env["BONDNET_WEBHOOK_CONFIGURATION"] == ""

    plugin = find(objects, "DaemonSet", "-device-plugin")["spec"]["template"]
    assert "--config-file=/etc/pcidp/config.json" in plugin["spec"]["containers"][0]["args"]
    config = next(v for v in plugin["spec"]["volumes"] if v["name"] == "config")
    agent = find(objects, "DaemonSet", "-agent")["spec"]["template"]["spec"]
    rendered = next(v for v in agent["volumes"] if v["name"] == "device-plugin")
    assert config["hostPath"]["path"] == rendered["hostPath"]["path"] == "/var/lib/bondnet/device-plugin"
    agent_env = {e["name"]: e.get("value") for e in agent["containers"][0]["env"]}
    assert agent_env["BONDNET_DEVICE_PLUGIN_CONFIG_FILE"] == "/host/device-plugin/config.json"
    selector = agent_env["BONDNET_DEVICE_PLUGIN_SELECTOR"]
    labels = plugin["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in (pair.split("=") for pair in selector.split(","))), (selector, labels)
    assert_rbac(objects, {"devicePluginRestarts"})


def log_formats(objects):
    """BONDNET_LOG_FORMAT of the controller, the agent and the webhook."""
    out = {}
    for kind, suffix in (("Deployment", "-controller"), ("DaemonSet", "-agent"), ("Deployment", "-webhook")):
        env = {e["name"]: e.get("value") for e in find(objects, kind, suffix)["spec"]["template"]["spec"]["containers"][0]["env"]}
        out[suffix[1:]] = env.get("BONDNET_LOG_FORMAT")
    return out


def test_logs_are_json_by_default_and_text_on_request():
    objects, _ = render()
    assert log_formats(objects) == {"controller": "json", "agent": "json", "webhook": "json"}
    objects, _ = render({"logFormat": "text"})
    assert log_formats(objects) == {"controller": "text", "agent": "text", "webhook": "text"}
    try:
        render({"logFormat": "xml"})
    except helm_sdkpy.HelmError as err:
        assert "logFormat" in str(err), err
        return
    raise AssertionError("logFormat=xml was accepted")


def test_without_the_webhook_nothing_of_it_is_rendered():
    objects, release = render({"webhook": {"enabled": False}})
    assert not [o for o in objects if "webhook" in o["metadata"]["name"]]
    assert "status.podAnnotation" in release["info"]["notes"]
    table_without_webhook = {r for r in expected(set()) if r[0] != "webhook"}
    assert granted(objects) == table_without_webhook


def main():
    tests = [(name, fn) for name, fn in globals().items() if name.startswith("test_")]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
            passed += 1
            print(f"ok     {name}")
        except Exception:
            failed += 1
            print(f"FAILED {name}\n{traceback.format_exc()}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
