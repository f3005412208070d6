"""examples/k8s: the manifests parse and say what the README promises (probes on /health, a
migration init step, one SQLite pod on a volume, three PostgreSQL replicas)."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

K8S = Path(__file__).resolve().parent.parent / "examples" / "k8s"


def workload(name: str) -> dict:
    documents = list(yaml.safe_load_all((K8S / name).read_text()))
    assert any(doc["kind"] == "Service" for doc in documents)
    return next(doc for doc in documents if doc["kind"] in ("Deployment", "StatefulSet"))


@pytest.mark.parametrize("name, kind, replicas", [
    ("sqlite-statefulset.yaml", "StatefulSet", 1),
    ("postgresql-deployment.yaml", "Deployment", 3),
])
def test_each_manifest_probes_health_migrates_first_and_terminates_gracefully(name, kind, replicas):
    made = workload(name)
    assert (made["kind"], made["spec"]["replicas"]) == (kind, replicas)
    pod = made["spec"]["template"]["spec"]
    assert [c["command"] for c in pod["initContainers"]] == [["lobstore", "migrate"]]
    (container,) = pod["containers"]
    assert "serve" in container["command"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    assert pod["terminationGracePeriodSeconds"] >= 15  # 10 s of HTTP drain, and more


def test_the_sqlite_pod_keeps_its_database_on_a_read_write_once_volume():
    made = workload("sqlite-statefulset.yaml")
    (claim,) = made["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    env = {e["name"]: e["value"] for e in made["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LOBSTORE_URL"].startswith("sqlite:////data/")
