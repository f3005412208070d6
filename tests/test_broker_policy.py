"""The token broker hands out no more than it should: an allow-list of repositories, no other
owner's repositories, no repository change without admin, permissions per lobster type. The
fake GitHub of test_github.py records every token request it gets."""

from __future__ import annotations

import subprocess

import pytest

from lobstore import ConfigurationError
from lobstore.adapters.http import make_app
from lobstore.adapters.http.auth import AuthSettings
from lobstore.broker.github import GitHubAppTokenProvider
from lobstore.broker.policy import DEFAULT_PERMISSIONS, BrokerPolicy, load_policy, policy_from
from lobstore.errors import RepositoryChangeRefusedError, RepositoryNotAllowedError, TokenRefusedError

from lobstore_server import LOBSTORE
from fake_github import APP_ID, INSTALL_ID, OWNER
from wsgi_client import WsgiClient

ALLOWED = ["minsley/*", "minsley-labs/web"]


@pytest.fixture
def provider(store, github, key):
    provider = GitHubAppTokenProvider(APP_ID, INSTALL_ID, key, api_base=github.url, timeout=5)
    store.set_token_provider(provider)
    return provider


def token_repos(github) -> list[list[str]]:
    return [request["body"]["repositories"] for request in github.requests]


# -- the policy file -----------------------------------------------------------------------------
def test_a_policy_file_with_every_setting(tmp_path):
    path = tmp_path / "broker.toml"
    path.write_text('''
repositories = ["minsley/*", "acme/web"]
owner = "minsley"
[permissions]
default = { contents = "read", metadata = "read" }
swe = { contents = "write", pull_requests = "write", metadata = "read" }
[services]
lobboss = "*"
lobsigliere = ["minsley/lobmob-vault"]
''')
    policy = load_policy(path)
    assert policy.repositories == ("minsley/*", "acme/web") and policy.owner == "minsley"
    assert policy.permissions_for("swe") == {"contents": "write", "pull_requests": "write", "metadata": "read"}
    assert policy.permissions_for("research") == policy.permissions_for(None) == {"contents": "read", "metadata": "read"}
    assert policy.service_policy.repos_for("lobboss") is None
    assert policy.service_policy.repos_for("lobsigliere") == ["minsley/lobmob-vault"]
    with pytest.raises(TokenRefusedError, match="names lobboss, lobsigliere"):
        policy.service_policy.repos_for("lobwife")
    assert str(path) in policy.source


def test_without_a_file_the_defaults_are_upstreams():
    policy = BrokerPolicy()
    assert policy.permissions_for("swe") == dict(DEFAULT_PERMISSIONS)
    assert policy.service_policy.services == ["lobboss", "lobboss-init", "lobsigliere", "lobwife"]
    policy.check_repos(["anyone/anything"])  # no owner known, no allow-list: nothing to refuse
    assert policy_from({"services": ["lobboss"]}).service_policy.services == ["lobboss"]


@pytest.mark.parametrize("data, words", [
    ({"repos": ["a/b"]}, "repos is not a setting"),
    ({"repositories": "minsley/*"}, "list of owner/name globs"),
    ({"repositories": ["minsley"]}, "'minsley', which is not an owner/name glob"),
    ({"owner": "not an owner"}, "owner must be a GitHub user"),
    ({"permissions": {"swe": {"contents": "admin"}}}, "permissions.swe.contents must be read or write"),
    ({"permissions": {"Bad Type": {"contents": "read"}}}, "is not a lobster type"),
    ({"permissions": {"swe": "write"}}, "must be a table"),
    ({"services": {"lobboss": "everything"}}, "services.lobboss must be \"*\" or a list"),
    ({"services": "lobboss"}, "must be a list of names or a table"),
])
def test_a_bad_policy_is_refused_naming_the_key(data, words):
    with pytest.raises(ConfigurationError) as caught:
        policy_from(data, "broker.toml")
    assert words in caught.value.message and "broker.toml" in caught.value.message


def test_an_unreadable_policy_file_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read the broker policy"):
        load_policy(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("repositories = [")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_policy(tmp_path / "bad.toml")


def test_globs_and_owners():
    policy = BrokerPolicy(repositories=tuple(ALLOWED))
    assert policy.allows_repo("minsley/lobmob") and policy.allows_repo("Minsley/Unity")
    assert policy.allows_repo("minsley-labs/web") and not policy.allows_repo("minsley-labs/api")
    with pytest.raises(RepositoryNotAllowedError) as caught:
        policy.check_repos(["minsley/lobmob", "other-org/payroll"])
    assert caught.value.to_dict()["repos"] == ["other-org/payroll"] and "minsley/*" in caught.value.message
    with pytest.raises(RepositoryNotAllowedError, match="belongs to minsley") as caught:
        policy.check_repos(["minsley-labs/web"], owner="minsley")  # allowed by glob, but not the owner's
    assert caught.value.to_dict()["owner"] == "minsley"


# -- the provider never rewrites a repository of another owner -----------------------------------
def test_the_provider_refuses_another_owners_repository_before_asking_for_a_token(github, key):
    provider = GitHubAppTokenProvider(APP_ID, INSTALL_ID, key, api_base=github.url, timeout=5)
    assert provider.known_owner is None
    with pytest.raises(RepositoryNotAllowedError, match="belongs to minsley") as caught:
        provider.issue(["minsley/lobmob", "other-org/payroll"])
    assert caught.value.to_dict()["repos"] == ["other-org/payroll"]
    assert github.requests == [] and github.lookups == [f"/app/installations/{INSTALL_ID}"]
    assert provider.known_owner == OWNER
    provider.issue(["MINSLEY/lobmob"])
    provider.issue(["minsley/unity"], permissions={"contents": "read"})
    assert github.lookups == [f"/app/installations/{INSTALL_ID}"]  # asked once
    assert token_repos(github) == [["lobmob"], ["unity"]]
    assert github.requests[1]["body"]["permissions"] == {"contents": "read"}


def test_a_configured_owner_is_not_asked_for(github, key):
    provider = GitHubAppTokenProvider(APP_ID, INSTALL_ID, key, api_base=github.url, timeout=5, owner="minsley")
    provider.issue(["minsley/lobmob"])
    assert github.lookups == [] and token_repos(github) == [["lobmob"]]


# -- the store: registration and issue under the policy ------------------------------------------
def test_registration_outside_the_allow_list_is_refused_and_writes_nothing(store):
    store.set_broker_policy(BrokerPolicy(repositories=tuple(ALLOWED)))
    store.tasks.create(name="a")
    with pytest.raises(RepositoryNotAllowedError):
        store.broker.register("T1", repos=["minsley/lobmob", "other-org/payroll"])
    assert store.tasks.get("T1").broker_status is None and store.broker.audit() == []
    assert store.broker.register("T1", repos=["minsley/lobmob"]).repos == ("minsley/lobmob",)


def test_a_task_that_received_tokens_changes_repos_only_with_admin(store, provider, github):
    store.tasks.create(name="a")
    store.broker.register("T1", repos=["minsley/lobmob"])
    store.broker.register("T1", repos=["minsley/unity"], may_change_repos=False)  # no token yet: fine
    store.broker.issue_token("T1")
    store.broker.register("T1", repos=["minsley/unity"], may_change_repos=False)  # a renewal: fine
    with pytest.raises(RepositoryChangeRefusedError, match="needs an admin credential") as caught:
        store.broker.register("T1", repos=["minsley/unity", "minsley/secrets"], may_change_repos=False)
    assert caught.value.to_dict()["code"] == "repository_change_refused"
    assert store.broker.get("T1").repos == ("minsley/unity",)
    store.broker.register("T1", repos=["minsley/secrets"])  # an administrator may
    assert store.broker.get("T1").repos == ("minsley/secrets",)


def test_a_policy_tightened_after_registration_stops_the_token(store, provider, github):
    store.tasks.create(name="a")
    store.broker.register("T1", repos=["minsley/lobmob", "minsley/secrets"])
    store.set_broker_policy(BrokerPolicy(repositories=("minsley/lobmob",)))
    with pytest.raises(RepositoryNotAllowedError, match="minsley/secrets"):
        store.broker.issue_token("T1")
    assert github.requests == []


def test_permissions_per_lobster_type(store, provider, github):
    store.set_broker_policy(policy_from({"permissions": {"qa": {"contents": "read", "metadata": "read"}}}))
    for name in ("a", "b"):
        store.tasks.create(name=name)
    store.broker.register("T1", repos=["minsley/lobmob"], lobster_type="qa")
    store.broker.register("T2", repos=["minsley/lobmob"], lobster_type="swe")
    store.broker.issue_token("T1")
    store.broker.issue_token("T2")
    assert [r["body"]["permissions"] for r in github.requests] == [
        {"contents": "read", "metadata": "read"}, dict(DEFAULT_PERMISSIONS)]


# -- the two attacks of the issue, over HTTP with credentials ------------------------------------
def test_re_registering_for_a_foreign_repository_is_refused_and_github_never_sees_it(store, provider, github):
    store.set_broker_policy(BrokerPolicy(repositories=tuple(ALLOWED)))
    client = WsgiClient(make_app(store, auth=AuthSettings()))
    lobboss = {"Authorization": "Bearer " + store.credentials.create("lobboss", scopes=["write", "broker"]).secret}
    admin = {"Authorization": "Bearer " + store.credentials.create("ops", scopes=["admin"]).secret}
    client.post("/api/v1/tasks", {"name": "a"}, headers=lobboss)
    first = client.post("/api/tasks/T1/register", {"repos": ["minsley/lobmob"]}, headers=lobboss)
    lobster = {"Authorization": "Bearer " + first.json["task_token"]}
    assert client.post("/api/token", {"task_id": "T1"}, headers=lobster).status == 200

    # The attack: register T1 again for another organisation's repository, then mint.
    foreign = client.post("/api/tasks/T1/register", {"repos": ["other-org/payroll"]}, headers=lobboss)
    assert foreign.status == 403 and foreign.json["code"] == "repository_not_allowed"
    assert foreign.json["repos"] == ["other-org/payroll"] and "belongs to minsley" in foreign.json["error"]
    as_admin = client.post("/api/tasks/T1/register", {"repos": ["other-org/payroll"]}, headers=admin)
    assert as_admin.status == 403  # not even an administrator: outside the allow-list and the owner
    # Inside the allow-list, but other repositories than the ones it received tokens for.
    moved = client.post("/api/tasks/T1/register", {"repos": ["minsley/secrets"]}, headers=lobboss)
    assert moved.status == 403 and moved.json["code"] == "repository_change_refused"
    assert client.post("/api/token", {"task_id": "T1"}, headers=lobster).status == 200
    assert client.get("/api/v1/tasks/T1", headers=admin).json["broker_repos"] == ["minsley/lobmob"]

    assert client.post("/api/tasks/T1/register", {"repos": ["minsley/secrets"]}, headers=admin).status == 200
    audit = client.get("/api/token/audit?task_id=T1", headers=admin).json
    assert [(e["action"], e["credential"]) for e in audit][-1] == ("task_registered", "ops")
    policy = BrokerPolicy(repositories=tuple(ALLOWED))
    assert all(policy.allows_repo(f"{OWNER}/{name}") for repos in token_repos(github) for name in repos)
    assert token_repos(github) == [["lobmob"]]  # the second token was the cached one


# -- serve with a policy file --------------------------------------------------------------------
def test_serve_reads_the_policy_and_refuses_to_start_with_a_bad_one(tmp_path, servers):
    policy = tmp_path / "broker.toml"
    policy.write_text('repositories = ["minsley/*"]\n')
    db = f"sqlite:///{tmp_path / 'lob.db'}"
    server = servers(db, "--broker-policy", str(policy))
    assert any("token broker policy" in line and "minsley/*" in line for line in server.lines)
    server.request("POST", "/api/v1/tasks", {"name": "a"})
    status, _, body = server.request("POST", "/api/tasks/T1/register", {"repos": ["acme/web"]})
    assert status == 403 and body["code"] == "repository_not_allowed"
    assert server.terminate() == 0

    policy.write_text('repositories = "minsley/*"\n')
    result = subprocess.run([str(LOBSTORE), "serve", "--db", db, "--port", "0", "--broker-policy", str(policy)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "repositories must be a list" in result.stderr


# -- the routes lobwife's clients use, with credentials ------------------------------------------
@pytest.fixture
def secured(store):
    return WsgiClient(make_app(store, auth=AuthSettings()))


def holder(store, name, *scopes):
    return {"Authorization": "Bearer " + store.credentials.create(name, scopes=list(scopes)).secret}


def test_service_tokens_need_admin_and_a_service_the_policy_names(store, provider, github, secured):
    store.set_broker_policy(policy_from({"services": {"lobboss": "*", "lobsigliere": ["minsley/lobmob-vault"]}}))
    lobboss, admin = holder(store, "lobboss", "write", "broker"), holder(store, "ops", "admin")
    refused = secured.post("/api/v1/service-token", {"service": "lobboss"}, headers=lobboss)
    assert refused.status == 403 and "admin scope" in refused.json["error"]
    assert secured.post("/api/v1/service-token", {"service": "lobboss"}).status == 401
    stranger = secured.post("/api/v1/service-token", {"service": "stranger"}, headers=admin)
    assert stranger.status == 403 and stranger.json["reason"] == "unknown_service"
    assert "names lobboss, lobsigliere" in stranger.json["error"]
    assert github.requests == []
    assert secured.post("/api/v1/service-token", {"service": "lobboss"}, headers=admin).status == 200
    assert secured.post("/api/v1/service-token", {"service": "lobsigliere"}, headers=admin).status == 200
    assert ["repositories" in r["body"] for r in github.requests] == [False, True]  # all, then the vault
    assert github.requests[1]["body"]["repositories"] == ["lobmob-vault"]
    audit = secured.get("/api/token/audit?task_id=lobboss", headers=admin).json
    assert [(e["action"], e["credential"]) for e in audit] == [("service_token_issued", "ops")]


def test_the_default_policy_serves_the_fleets_services_only(store, provider, github):
    client = WsgiClient(make_app(store))  # auth off: no scope to ask for, the policy still holds
    assert client.post("/api/v1/service-token", {"service": "lobboss-init"}).status == 200
    refused = client.post("/api/v1/service-token", {"service": "anything-else"})
    assert refused.status == 403 and refused.json["reason"] == "unknown_service"


def test_a_patch_of_broker_fields_is_a_registration(store, provider, github, secured):
    store.set_broker_policy(BrokerPolicy(repositories=tuple(ALLOWED)))
    writer, lobboss = holder(store, "cron", "write"), holder(store, "lobboss", "write", "broker")
    admin = holder(store, "ops", "admin")
    secured.post("/api/v1/tasks", {"name": "a"}, headers=lobboss)
    fields = {"broker_repos": ["minsley/lobmob"], "broker_status": "active", "actor": "broker/swe"}
    refused = secured.patch("/api/v1/tasks/T1", fields, headers=writer)
    assert refused.status == 403 and refused.json["field"] == "broker_repos" and "broker scope" in refused.json["error"]
    foreign = secured.patch("/api/v1/tasks/T1", {**fields, "broker_repos": ["other-org/payroll"]}, headers=lobboss)
    assert foreign.status == 403 and foreign.json["code"] == "repository_not_allowed"
    assert secured.patch("/api/v1/tasks/T1", fields, headers=lobboss).status == 200
    store.broker.issue_token("T1")
    moved = secured.patch("/api/v1/tasks/T1", {"broker_repos": ["minsley/secrets"]}, headers=lobboss)
    assert moved.status == 403 and moved.json["code"] == "repository_change_refused"
    assert secured.patch("/api/v1/tasks/T1", {"broker_repos": ["minsley/secrets"]}, headers=admin).status == 200
    assert store.broker.get("T1").repos == ("minsley/secrets",)
    actions = [(e["action"], e["credential"]) for e in secured.get("/api/token/audit", headers=admin).json]
    assert actions == [("task_registered", "lobboss"), ("token_issued", None), ("task_registered", "ops")]


def test_a_lobster_names_its_task_as_lobwife_did_and_no_other(store, provider, github, secured):
    lobboss = holder(store, "lobboss", "write", "broker")
    for name, slug in (("mine", "fix-login"), ("theirs", "fix-logout")):
        secured.post("/api/v1/tasks", {"name": name, "slug": slug}, headers=lobboss)
    lobster = {"Authorization": "Bearer " + secured.post(
        "/api/tasks/T1/register", {"repos": ["minsley/lobmob"]}, headers=lobboss).json["task_token"]}
    secured.post("/api/tasks/fix-logout/register", {"repos": ["minsley/unity"]}, headers=lobboss)
    assert secured.post("/api/token", {"task_id": "fix-login"}, headers=lobster).status == 200
    assert secured.post("/api/token", {"task_id": "1"}, headers=lobster).status == 200
    other = secured.post("/api/token", {"task_id": "fix-logout"}, headers=lobster)
    assert other.status == 403 and "acts on T1 only" in other.json["error"]
    assert token_repos(github) == [["lobmob"]]
    # A standalone registration has no task to bind a credential to: no task_token for it.
    standalone = secured.post("/api/tasks/verify-test/register", {"repos": ["minsley/lobmob"]}, headers=lobboss)
    assert standalone.status == 200 and standalone.json["task"] is None and "task_token" not in standalone.json
    assert secured.post("/api/token", {"task_id": "verify-test"}, headers=lobster).status == 403
    # lobwife's DELETE /api/tasks/{id} ends the registration, and the lobster's credential with it.
    assert secured.delete("/api/tasks/fix-login", headers=lobboss).json["status"] == "removed"
    assert secured.get("/api/v1/tasks/T1", headers=lobster).status == 401
    audit = secured.get("/api/token/audit?task_id=T1", headers=lobboss).json
    assert (audit[-1]["action"], audit[-1]["credential"]) == ("task_deregistered", "lobboss")
