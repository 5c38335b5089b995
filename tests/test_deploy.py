"""deploy/: the Helm values use only keys that Dagster's official chart documents (its values schema,
chart 1.13), carry the same queue rules as dagster.yaml, and take every secret from Kubernetes Secrets; the
API manifest and the Dockerfile hold to the same rules. No cluster and no Docker engine here: these are
structural checks."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.support import REPO

VALUES = yaml.safe_load((REPO / "deploy/helm/values.yaml").read_text())
API = list(yaml.safe_load_all((REPO / "deploy/k8s/api.yaml").read_text()))
INSTANCE = yaml.safe_load((REPO / "dagster.yaml").read_text())
# The admin token is in the API's own Secret: the code server and run pods get only sales-sync-secrets.
SECRETS = {"sales-sync-secrets": {"WAREHOUSE_URL", "SYNC_SECRET_KEY"}, "sales-sync-api-secrets": {"SYNC_ADMIN_TOKEN"}}
POLICIES = list(yaml.safe_load_all((REPO / "deploy/k8s/network-policies.yaml").read_text()))
UI_PROXY = list(yaml.safe_load_all((REPO / "deploy/k8s/dagster-ui-proxy.yaml").read_text()))
CHART_PG_SECRET = ("dagster-postgresql-secret", "postgresql-password")

# The keys the chart's values schema documents for the sections used here (its pydantic models under
# helm/dagster/schema). A mapping value means "check the keys below too"; None means free-form below.
IMAGE = {"repository": None, "tag": None, "pullPolicy": None}
POD = {
    "annotations": None, "nodeSelector": None, "affinity": None, "tolerations": None, "podSecurityContext": None,
    "securityContext": None, "resources": None, "labels": None, "volumeMounts": None, "volumes": None,
    "schedulerName": None, "livenessProbe": None, "readinessProbe": None, "startupProbe": None,
}  # fmt: skip
ENV = {"env": None, "envConfigMaps": None, "envSecrets": None}
DOCUMENTED: dict[str, Any] = {
    "global": {
        "postgresqlSecretName": None, "dagsterHome": None, "serviceAccountName": None,
        "celeryConfigSecretName": None, "dagsterInstanceConfigMap": None,
    },
    "dagsterWebserver": {
        "replicaCount": None, "image": IMAGE, "nameOverride": None, "pathPrefix": None, "service": None,
        "workspace": None, "deploymentLabels": None, "enableReadOnly": None, "dbStatementTimeout": None,
        "dbPoolRecycle": None, "logLevel": None, **ENV, **POD,
    },
    "dagster-user-deployments": {
        "enabled": None, "enableSubchart": None, "imagePullSecrets": None,
        "deployments": [{
            "name": None, "image": IMAGE, "dagsterApiGrpcArgs": None, "codeServerArgs": None,
            "includeConfigInLaunchedRuns": {"enabled": None}, "port": None, **ENV, **POD,
        }],
    },
    "runLauncher": {
        "type": None,
        "config": {
            "k8sRunLauncher": {
                "image": IMAGE, "imagePullPolicy": None, "jobNamespace": None, "loadInclusterConfig": None,
                "kubeconfigFile": None, "envConfigMaps": None, "envSecrets": None, "envVars": None,
                "volumeMounts": None, "volumes": None, "labels": None, "failPodOnRunFailure": None,
                "resources": None, "schedulerName": None, "securityContext": None,
                "runK8sConfig": {
                    "containerConfig": None, "podSpecConfig": None, "podTemplateSpecMetadata": None,
                    "jobSpecConfig": None, "jobMetadata": None,
                },
            }
        },
    },
    "postgresql": {
        "image": IMAGE, "enabled": None, "postgresqlHost": None, "postgresqlUsername": None,
        "postgresqlPassword": None, "postgresqlDatabase": None, "postgresqlParams": None,
        "postgresqlScheme": None, "service": {"port": None},
    },
    "generatePostgresqlPasswordSecret": None,
    "dagsterDaemon": {
        "enabled": None, "image": IMAGE, "heartbeatTolerance": None, "deploymentLabels": None,
        "runMonitoring": None, "runRetries": None,
        "runCoordinator": {
            "enabled": None, "type": None,
            "config": {
                "queuedRunCoordinator": {
                    "maxConcurrentRuns": None, "tagConcurrencyLimits": None, "dequeueIntervalSeconds": None,
                    "dequeueNumWorkers": None, "dequeueUseThreads": None,
                }
            },
        },
        "sensors": {"useThreads": None, "numWorkers": None, "numSubmitWorkers": None},
        "schedules": {"useThreads": None, "numWorkers": None, "numSubmitWorkers": None},
        **ENV, **POD,
    },
    "rabbitmq": {"enabled": None},
    "redis": {"enabled": None},
    "flower": {"enabled": None},
    "migrate": {"enabled": None},
    "telemetry": {"enabled": None},
}  # fmt: skip


def undocumented_keys(values: Any, documented: Any, path: str = "") -> list[str]:
    if documented is None:
        return []
    if isinstance(documented, list):
        return [k for i, item in enumerate(values) for k in undocumented_keys(item, documented[0], f"{path}[{i}]")]
    found = []
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        if key not in documented:
            found.append(where)
        else:
            found += undocumented_keys(value, documented[key], where)
    return found


def test_helm_values_use_only_keys_the_chart_documents():
    assert undocumented_keys(VALUES, DOCUMENTED) == []


def test_helm_values_catch_an_undocumented_key():
    broken = {**VALUES, "dagsterDaemon": {**VALUES["dagsterDaemon"], "runCoordinatr": {}}}
    assert undocumented_keys(broken, DOCUMENTED) == ["dagsterDaemon.runCoordinatr"]


def test_helm_values_run_on_k8s_with_the_queue_rules_of_dagster_yaml():
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    assert VALUES["dagster-user-deployments"]["enabled"] is True
    assert VALUES["dagsterDaemon"]["enabled"] is True
    queue = VALUES["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queue["tagConcurrencyLimits"] == INSTANCE["concurrency"]["runs"]["tag_concurrency_limits"]
    assert queue["maxConcurrentRuns"] == INSTANCE["concurrency"]["runs"]["max_concurrent_runs"]
    assert queue["dequeueUseThreads"] is True
    monitoring = VALUES["dagsterDaemon"]["runMonitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["maxRuntimeSeconds"] == INSTANCE["run_monitoring"]["max_runtime_seconds"]
    retries = VALUES["dagsterDaemon"]["runRetries"]
    assert (retries["enabled"], retries["maxRetries"]) == (True, INSTANCE["run_retries"]["max_retries"])


def test_secrets_come_from_kubernetes_secrets_only():
    (deployment,) = VALUES["dagster-user-deployments"]["deployments"]
    assert deployment["envSecrets"] == [{"name": "sales-sync-secrets"}]
    assert VALUES["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] == [{"name": "sales-sync-secrets"}]
    assert not set(deployment["env"]) & set().union(*SECRETS.values())
    assert VALUES["postgresql"]["enabled"] is False
    assert VALUES["generatePostgresqlPasswordSecret"] is False
    assert VALUES["global"]["postgresqlSecretName"] == CHART_PG_SECRET[0]

    (container,) = API[0]["spec"]["template"]["spec"]["containers"]
    referenced = {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container["env"]
        if "valueFrom" in e
    }
    assert referenced == {(name, k) for name, keys in SECRETS.items() for k in keys} | {CHART_PG_SECRET}
    # Everything else is an address, not a secret: the instance's home and the code location's server.
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    [deployment] = VALUES["dagster-user-deployments"]["deployments"]
    assert plain == {
        "DAGSTER_HOME": "/opt/dagster/dagster_home",
        "CODE_SERVER_HOST": deployment["name"],
        "CODE_SERVER_PORT": str(deployment["port"]),
    }


def test_the_api_is_its_own_deployment_and_service_on_the_code_location_image():
    deployment, service = API
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    image = VALUES["dagster-user-deployments"]["deployments"][0]["image"]
    assert container["image"] == f"{image['repository']}:{image['tag']}"
    assert container["command"][:2] == ["uvicorn", "api.app:app"]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_dockerfile_is_pinned_non_root_and_installs_from_pyproject():
    text = (REPO / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert bases and all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", b) for b in bases), bases
    assert re.findall(r"^USER (\S+)", text, flags=re.M) == ["10001:10001"]
    assert "COPY pyproject.toml ./" in text
    assert 'pip install ".[k8s,celery]"' in text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests", ".demo", ".run"} <= set(ignored)


# --- who may reach the orchestrator ------------------------------------------------------------------

# The labels the chart (1.13) and our manifests give each kind of pod; run pods are the K8sRunLauncher's.
PODS = {
    "webserver": {"app.kubernetes.io/name": "dagster", "component": "dagster-webserver"},
    "read-only webserver": {"app.kubernetes.io/name": "dagster", "component": "dagster-webserver-read-only"},
    "daemon": {"app.kubernetes.io/name": "dagster", "component": "dagster-daemon", "deployment": "daemon"},
    "code server": {"app.kubernetes.io/name": "dagster", "component": "user-deployments", "deployment": "sales-sync"},
    "run pod": {
        "app.kubernetes.io/name": "dagster",
        "app.kubernetes.io/component": "run_worker",
        **VALUES["runLauncher"]["config"]["k8sRunLauncher"]["labels"],
    },
    "api": API[0]["spec"]["template"]["metadata"]["labels"],
    "ui proxy": UI_PROXY[1]["spec"]["template"]["metadata"]["labels"],
}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics for matchLabels and In/NotIn/Exists expressions."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        value, operator = labels.get(expression["key"]), expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
    return True


def may_connect(source: str, target: str) -> bool:
    """What the NetworkPolicies allow, as the API server evaluates them (ingress only: pods no policy
    selects accept everything)."""
    policies = [p for p in POLICIES if selects(p["spec"]["podSelector"], PODS[target])]
    if not policies:
        return True
    return any(
        selects(peer["podSelector"], PODS[source])
        for policy in policies
        for rule in policy["spec"].get("ingress") or []
        for peer in rule.get("from") or []
    )


def test_network_policies_keep_run_pods_off_the_orchestrator():
    webservers = ("webserver", "read-only webserver")
    for webserver in webservers:
        assert [s for s in PODS if may_connect(s, webserver)] == ["ui proxy"]
    allowed = [s for s in PODS if may_connect(s, "code server")]
    assert allowed == ["webserver", "read-only webserver", "daemon", "api"]
    assert not any(may_connect("run pod", target) for target in (*webservers, "code server"))
    # The policies' ports are the services' ports.
    [code_location] = VALUES["dagster-user-deployments"]["deployments"]
    ports = {p["metadata"]["name"]: p["spec"]["ingress"][0]["ports"][0]["port"] for p in POLICIES}
    assert ports == {
        "dagster-webserver-only-from-ui-proxy": VALUES["dagsterWebserver"]["service"]["port"],
        "code-server-only-from-dagster-and-api": code_location["port"],
    }


def test_the_webserver_is_behind_the_authenticating_proxy_with_a_read_only_twin():
    assert VALUES["dagsterWebserver"]["service"]["type"] == "ClusterIP"
    assert VALUES["dagsterWebserver"]["enableReadOnly"] is True
    config_map, deployment, service = UI_PROXY
    nginx = config_map["data"]["nginx.conf"]
    locations = config_map["data"]["dagster-locations.conf"]
    # Every server asks for a login, and the two logins lead to the two webservers.
    assert nginx.count("auth_basic_user_file") == nginx.count("listen ") == 2
    assert "sales-sync-webserver.sales-sync" in nginx and "sales-sync-webserver-read-only.sales-sync" in nginx
    # GraphQL only as a JSON POST or a same-origin WebSocket; mutations by GET or form POST get a 405.
    assert '"~^POST application/json(;.*)?$" 1;' in nginx
    assert "if ($graphql_allowed = 0) { return 405; }" in locations
    assert "location ~ ^/report_asset_ {\n  return 403;" in locations
    assert "limit_except GET { deny all; }" in locations
    secrets = [v["secret"]["secretName"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert secrets == ["dagster-ui-operators", "dagster-ui-viewers"]
    assert service["spec"]["type"] == "ClusterIP"


def test_make_up_binds_the_webserver_code_server_and_api_to_loopback(monkeypatch):
    from scripts import stack

    monkeypatch.delenv("CODE_SERVER_HOST", raising=False)
    env = {"CODE_SERVER_HOST": stack.code_server_address()[0], "CODE_SERVER_PORT": "4000"}
    found = {
        s.name: s.argv for s in stack.services(env, dagster_port=3001, api_port=3000, sandbox_port=None, with_api=True)
    }
    assert found["dagster-webserver"][found["dagster-webserver"].index("-h") + 1] == "127.0.0.1"
    assert found["code-server"][found["code-server"].index("-h") + 1] == "127.0.0.1"
    assert found["api"][found["api"].index("--host") + 1] == "127.0.0.1"
