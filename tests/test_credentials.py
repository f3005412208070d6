"""API credentials in the store and on the command line, on every backend: secrets shown once
and kept only as a hash, revocation and expiry, task credentials that live and die with their
task's broker registration."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from lobstore import ConflictError, NotFoundError, ValidationError, open_store
from lobstore.cli import main
from lobstore.clock import utcnow
from lobstore.errors import AuthenticationError
from lobstore.schema import broker_tasks, credentials


SECRET_RE = re.compile(r"^lbs_[A-Za-z0-9_-]{43}$")


def set_column(store, table, column, value, **where):
    """Move a stored time (the only way a test can let a day pass), behind the store's back."""
    with store.backend.writing() as conn:
        conn.execute(sa.update(table).where(*(table.c[k] == v for k, v in where.items())).values({column: value}))
    store.credentials.forget_checks()


def reason(store, secret):
    with pytest.raises(AuthenticationError) as caught:
        store.credentials.authenticate(secret)
    assert caught.value.to_dict()["code"] == "unauthenticated"
    return caught.value.reason


def test_a_secret_is_shown_once_and_only_its_hash_is_stored(store):
    issued = store.credentials.create("lobboss", scopes=["broker", "write"], created_by="cli")
    assert SECRET_RE.match(issued.secret)
    assert issued.secret not in repr(issued)
    credential = store.credentials.authenticate(issued.secret)
    assert (credential.name, credential.scopes, credential.task_ref) == ("lobboss", ("write", "broker"), None)
    with store.backend.reading() as conn:
        (row,) = conn.execute(sa.select(credentials)).mappings().all()
    assert row["secret_hash"] == hashlib.sha256(issued.secret.encode()).hexdigest()
    assert not any(issued.secret in str(value) for value in row.values())
    assert "secret" not in credential.to_dict() and issued.to_dict()["secret"] == issued.secret
    other = store.credentials.create("dashboard", scopes=["read"])
    assert other.secret != issued.secret


@pytest.mark.parametrize("secret", ["", "lbs_", "Bearer x", "lbs_" + "a" * 43, "lbx_" + "a" * 43, "lbs_" + "a" * 44])
def test_a_secret_the_store_never_made_is_unknown(store, secret):
    store.credentials.create("lobboss", scopes=["read"])
    assert reason(store, secret) == "unknown"


def test_a_revoked_credential_is_refused_and_its_name_can_be_given_again(store):
    first = store.credentials.create("lobboss", scopes=["write"])
    with pytest.raises(ConflictError) as caught:
        store.credentials.create("lobboss", scopes=["read"])
    assert "revoke it first" in caught.value.message and caught.value.to_dict()["field"] == "name"
    (revoked,) = store.credentials.revoke("lobboss")
    assert revoked.revoked_at is not None
    assert reason(store, first.secret) == "revoked"
    second = store.credentials.create("lobboss", scopes=["read"])  # a rotation
    assert store.credentials.authenticate(second.secret).scopes == ("read",)
    assert [c.name for c in store.credentials.list()] == ["lobboss"]
    assert [c.revoked_at is None for c in store.credentials.list(include_revoked=True)] == [False, True]
    with pytest.raises(NotFoundError):
        store.credentials.revoke("nobody")


def test_an_expired_credential_is_refused(store):
    issued = store.credentials.create("dashboard", scopes=["read"], expires_at=utcnow() + timedelta(days=1))
    assert store.credentials.authenticate(issued.secret).name == "dashboard"
    set_column(store, credentials, "expires_at", utcnow() - timedelta(seconds=1), name="dashboard")
    assert reason(store, issued.secret) == "expired"


@pytest.mark.parametrize("fields, field", [
    ({"name": "", "scopes": ["read"]}, "name"),
    ({"name": "has space", "scopes": ["read"]}, "name"),
    ({"name": "task:T1", "scopes": ["read"]}, "name"),
    ({"name": "x" * 65, "scopes": ["read"]}, "name"),
    ({"name": "ok", "scopes": []}, "scopes"),
    ({"name": "ok", "scopes": "read"}, "scopes"),
    ({"name": "ok", "scopes": ["read", "root"]}, "scopes"),
    ({"name": "ok", "scopes": ["read"], "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
    ({"name": "ok", "scopes": ["read"], "expires_at": "tomorrow"}, "expires_at"),
])
def test_bad_credentials_are_refused_naming_the_field_and_nothing_is_stored(store, fields, field):
    with pytest.raises(ValidationError) as caught:
        store.credentials.create(**fields)
    assert caught.value.field == field
    assert store.credentials.list(include_revoked=True, include_tasks=True) == []


def test_last_used_is_written_at_most_once_a_minute(store):
    issued = store.credentials.create("lobboss", scopes=["read"])
    assert store.credentials.get("lobboss").last_used_at is None
    store.credentials.authenticate(issued.secret)
    first = store.credentials.get("lobboss").last_used_at
    assert first is not None and abs((utcnow() - first).total_seconds()) < 5
    recent = utcnow() - timedelta(seconds=30)
    set_column(store, credentials, "last_used_at", recent, name="lobboss")
    store.credentials.authenticate(issued.secret)
    assert store.credentials.get("lobboss").last_used_at == recent  # not written again
    set_column(store, credentials, "last_used_at", utcnow() - timedelta(minutes=2), name="lobboss")
    store.credentials.authenticate(issued.secret)
    assert store.credentials.get("lobboss").last_used_at > recent


def test_a_task_credential_lives_and_dies_with_its_registration(store):
    store.tasks.create(name="a")
    store.broker.register("T1", repos=["minsley/lobmob"])
    issued = store.credentials.create_for_task("T1", created_by="lobboss")
    assert issued.secret.startswith("lbt_")
    credential = store.credentials.authenticate(issued.secret)
    assert (credential.name, credential.task_id, credential.task_ref, credential.scopes) == ("task:T1", 1, "T1", ())
    assert store.credentials.list() == []  # not among the named ones
    assert [c.name for c in store.credentials.list(include_tasks=True)] == ["task:T1"]

    set_column(store, broker_tasks, "expires_at", utcnow() - timedelta(seconds=1), task_id=1)
    assert reason(store, issued.secret) == "expired"  # before the sweep has run
    store.broker.register("T1", repos=["minsley/lobmob"])  # renewed: the credential with it
    assert store.credentials.authenticate(issued.secret).task_ref == "T1"

    store.broker.deregister("T1")
    assert reason(store, issued.secret) == "revoked"
    store.broker.register("T1", repos=["minsley/lobmob"])  # a new lobster: the old one stays out
    assert reason(store, issued.secret) == "revoked"


def test_the_expiry_sweep_and_a_cancel_revoke_task_credentials(store):
    for ref in ("T1", "T2"):
        store.tasks.create(name=ref)
        store.broker.register(ref, repos=["minsley/lobmob"], ttl=timedelta(hours=1))
    first, second = (store.credentials.create_for_task(ref) for ref in ("T1", "T2"))
    store.broker.expire(as_of=utcnow() + timedelta(hours=2))
    assert reason(store, first.secret) == reason(store, second.secret) == "revoked"
    store.tasks.create(name="c")
    store.broker.register("T3", repos=["minsley/lobmob"])
    third = store.credentials.create_for_task("T3")
    store.tasks.cancel("T3")
    assert reason(store, third.secret) == "revoked"


def test_revoking_task_T1_revokes_each_of_its_credentials(store):
    store.tasks.create(name="a")
    store.broker.register("T1", repos=["minsley/lobmob"])
    issued = [store.credentials.create_for_task("T1") for _ in range(2)]
    assert [c.name for c in store.credentials.revoke("task:T1")] == ["task:T1", "task:T1"]
    assert [reason(store, i.secret) for i in issued] == ["revoked", "revoked"]
    assert store.broker.get("T1").status == "active"  # the registration itself carries on


# -- the command line ----------------------------------------------------------------------------
@pytest.fixture
def db(sqlite_file_url, monkeypatch):
    monkeypatch.delenv("LOBSTORE_URL", raising=False)
    return sqlite_file_url


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_prints_the_secret_alone_on_stdout_once(db, capsys):
    code, out, err = run(capsys, "--db", db, "credentials", "create", "lobboss", "--scope", "write,broker",
                         "--expires", "90d")
    secret = out.strip()
    assert code == 0 and SECRET_RE.match(secret)
    assert "'lobboss' (write, broker; expires 20" in err and "shown this once" in err
    with open_store(db) as store:
        assert store.credentials.authenticate(secret).scopes == ("write", "broker")
        expires = store.credentials.get("lobboss").expires_at
    assert timedelta(days=89) < expires - utcnow() <= timedelta(days=90)

    code, out, _ = run(capsys, "--db", db, "credentials", "list")
    header, row = out.splitlines()
    assert header.split() == ["NAME", "SCOPES", "CREATED", "LAST", "USED", "EXPIRES", "STATE"]
    assert row.startswith("lobboss  write, broker") and row.endswith("live") and secret not in out
    code, out, _ = run(capsys, "--db", db, "credentials", "list", "--json")
    (listed,) = json.loads(out)
    assert listed["name"] == "lobboss" and "secret" not in listed and listed["last_used_at"] is not None

    code, out, _ = run(capsys, "--db", db, "credentials", "revoke", "lobboss")
    assert code == 0 and out.startswith("revoked 'lobboss'")
    code, out, _ = run(capsys, "--db", db, "credentials", "list")
    assert out.startswith("no credentials")
    code, out, _ = run(capsys, "--db", db, "credentials", "list", "--all")
    assert "revoked 20" in out.splitlines()[1]


@pytest.mark.parametrize("argv, message", [
    (["create", "x", "--scope", "root"], "'root', which is not a scope"),
    (["create", "x", "--scope", "read", "--expires", "soon"], "--expires takes a duration"),
    (["create", "x", "--scope", "read", "--expires", "2020-01-01"], "must be in the future"),
    (["revoke", "nobody"], "no live credential named 'nobody'"),
])
def test_cli_refusals_say_what_to_fix(db, capsys, argv, message):
    code, out, err = run(capsys, "--db", db, "credentials", *argv)
    assert code == 1 and out == "" and message in err


def test_cli_json_create_and_a_second_live_name_is_refused(db, capsys):
    code, out, _ = run(capsys, "--db", db, "credentials", "create", "ops", "--scope", "admin", "--json")
    made = json.loads(out)
    assert (made["name"], made["scopes"], made["expires_at"]) == ("ops", ["admin"], None)
    assert SECRET_RE.match(made["secret"])
    code, out, err = run(capsys, "--db", db, "credentials", "create", "ops", "--scope", "read")
    assert code == 1 and "already named 'ops'" in err


# -- the 5 s memory of good checks ---------------------------------------------------------------
def later(monkeypatch, seconds):
    """Let ``seconds`` pass for the credentials repository."""
    import lobstore.repositories.credentials as module

    moment = utcnow() + timedelta(seconds=seconds)
    monkeypatch.setattr(module, "utcnow", lambda: moment)


def test_a_revocation_elsewhere_is_seen_within_five_seconds(sqlite_file_url, monkeypatch):
    with open_store(sqlite_file_url) as server, open_store(sqlite_file_url) as cli:
        issued = server.credentials.create("lobboss", scopes=["write"])
        assert server.credentials.authenticate(issued.secret).name == "lobboss"
        cli.credentials.revoke("lobboss")  # `lobstore credentials revoke` in another process
        assert server.credentials.authenticate(issued.secret).name == "lobboss"  # remembered
        later(monkeypatch, 6)
        assert reason(server, issued.secret) == "revoked"


def test_a_remembered_check_never_outlives_the_credential(store, monkeypatch):
    issued = store.credentials.create("dash", scopes=["read"], expires_at=utcnow() + timedelta(seconds=2))
    store.tasks.create(name="a")
    store.broker.register("T1", repos=["minsley/lobmob"], ttl=timedelta(seconds=2))
    task = store.credentials.create_for_task("T1")
    assert store.credentials.authenticate(issued.secret) and store.credentials.authenticate(task.secret)
    later(monkeypatch, 3)
    assert reason(store, issued.secret) == reason(store, task.secret) == "expired"
