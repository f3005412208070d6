"""Costs, prices and audit findings over HTTP (WSGI), on every backend: issue 5's acceptance as a
client sees it, and the JSON letter of DESIGN.md."""

from __future__ import annotations

import re

import pytest

from wsgi_client import assert_error

OPUS, SONNET, HAIKU = "claude-opus-4-6", "claude-sonnet-4-5", "claude-haiku-4-5"
EVENT_KEYS = {"id", "task_id", "model", "agent", "input_tokens", "output_tokens", "cache_read_tokens",
              "cache_write_tokens", "cost_usd", "cost_source", "uncosted", "price_id", "request_id", "created_at"}
TOTAL_KEYS = {"cost_usd", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
              "events", "uncosted_events"}
FINDING_KEYS = {"id", "audit_type", "severity", "title", "detail", "target", "fingerprint", "status",
                "occurrences", "run_id", "first_seen_at", "last_seen_at", "resolved_at", "resolution",
                "resolved_by", "fix_task_id"}


def events_stored(client):
    return client.get("/api/costs?limit=1000").json


# -- recording ------------------------------------------------------------------------------
def test_one_event_is_stored_costed_and_answered_in_the_json_letter(client, api):
    client.post("/api/tasks", {"name": "Unity UI overhaul"})
    response = client.post(f"{api}/costs", {"task_id": "T1", "model": OPUS, "agent": "lobster-swe-t1",
                                            "input_tokens": 1200, "output_tokens": 300})
    assert response.status == 201
    event = response.json
    assert set(event) == EVENT_KEYS
    # 1200 * $5/M + 300 * $25/M
    assert (event["task_id"], event["cost_usd"], event["cost_source"], event["uncosted"]) == ("T1", 0.0135, "computed", False)
    assert events_stored(client) == [event]


def test_a_task_may_be_named_by_number_or_legacy_id_and_is_answered_as_its_ref(client):
    client.post("/api/tasks", {"name": "a", "legacy_id": "task-2026-02-15-a1b2"})
    for ref in (1, "1", "t1", "task-2026-02-15-a1b2"):
        assert client.post("/api/costs", {"task_id": ref, "model": OPUS}).json["task_id"] == "T1"
    assert client.post("/api/costs", {"model": OPUS}).json["task_id"] is None  # lobboss's own calls


def test_a_reported_cost_is_kept_as_reported(client):
    event = client.post("/api/costs", {"model": OPUS, "input_tokens": 10**6, "cost_usd": 0.25}).json
    assert (event["cost_usd"], event["cost_source"], event["price_id"]) == (0.25, "reported", None)


def test_a_repeated_request_id_answers_200_with_the_first_event_and_counts_once(client, api):
    body = {"model": SONNET, "input_tokens": 1000, "request_id": "msg_01"}
    first = client.post(f"{api}/costs", body)
    again = client.post(f"{api}/costs", {**body, "input_tokens": 5})  # a retry, even if garbled
    assert (first.status, again.status) == (201, 200)
    assert again.json == first.json
    assert len(events_stored(client)) == 1
    assert client.get("/api/costs/summary").json["events"] == 1


def test_a_batch_is_stored_in_order_and_a_retried_batch_answers_200(client, api):
    client.post("/api/tasks", {"name": "a"})
    batch = [{"task_id": "T1", "model": HAIKU, "input_tokens": n, "request_id": f"r{n}"} for n in range(1, 6)]
    response = client.post(f"{api}/costs", batch)
    assert response.status == 201
    assert [e["input_tokens"] for e in response.json] == [1, 2, 3, 4, 5]
    assert all(e["task_id"] == "T1" for e in response.json)
    retried = client.post(f"{api}/costs", batch)
    assert retried.status == 200 and retried.json == response.json
    partly = client.post(f"{api}/costs", batch[:1] + [{"model": HAIKU, "request_id": "r6"}])
    assert partly.status == 201 and partly.json[0] == response.json[0]
    assert len(events_stored(client)) == 6


@pytest.mark.parametrize("bad, field", [
    ({"model": ""}, "model"),
    ({"input_tokens": -1}, "input_tokens"),
    ({"output_tokens": "300"}, "output_tokens"),
    ({"cost_usd": -0.1}, "cost_usd"),
    ({"task_id": "T99"}, "task_id"),
    ({"created_at": "yesterday"}, "created_at"),
    ({"colour": "red"}, "colour"),
])
def test_a_batch_with_one_bad_event_stores_none_and_names_its_index_and_field(client, bad, field):
    client.post("/api/tasks", {"name": "a"})
    batch = [{"task_id": "T1", "model": OPUS, "input_tokens": 1}] * 3
    batch = batch[:2] + [{"task_id": "T1", "model": OPUS, **bad}]
    body = assert_error(client.post("/api/costs", batch), 422, "invalid", field)
    assert body["index"] == 2 and "2" in body["error"]
    assert events_stored(client) == []


@pytest.mark.parametrize("body, field", [
    ([], "events"), ([{"model": OPUS}] * 1001, "events"), ([{"model": OPUS}, "x"], "events"),
    ({}, "model"), ({"model": OPUS, "input_tokens": 1.5}, "input_tokens"),
    ({"model": OPUS, "self": 1}, "self"), ({"model": OPUS, "task": "T1", "task_id": "T1"}, "task"),
    ({"model": OPUS, "request_id": ["a"]}, "request_id"), ("a string", "body"),
])
def test_bad_posts_are_422_naming_the_field_and_store_nothing(client, body, field):
    client.post("/api/tasks", {"name": "a"})
    assert_error(client.post("/api/costs", body), 422, "invalid", field)
    assert events_stored(client) == []


def test_an_event_for_a_model_without_a_price_is_stored_uncosted(client):
    response = client.post("/api/costs", {"model": "gpt-9", "input_tokens": 500, "output_tokens": 100})
    assert response.status == 201
    event = response.json
    assert (event["cost_usd"], event["uncosted"], event["cost_source"]) == (None, True, "uncosted")
    assert event["input_tokens"] == 500
    summary = client.get("/api/costs/summary?group_by=model").json
    assert (summary["events"], summary["uncosted_events"], summary["cost_usd"]) == (1, 1, 0)
    assert summary["groups"][0]["key"] == "gpt-9"


def test_a_thousand_millionths_sum_to_exactly_a_thousandth(client):
    client.post("/api/tasks", {"name": "a"})
    assert client.post("/api/costs", [{"task_id": "T1", "model": "m", "cost_usd": 0.000001}] * 1000).status == 201
    assert client.get("/api/costs/summary").json["cost_usd"] == 0.001
    assert client.get("/api/tasks/T1/costs").json["cost_usd"] == 0.001


# -- reading --------------------------------------------------------------------------------
def test_listing_filters_and_pages_with_a_link_header(client, api):
    client.post("/api/tasks", {"name": "a"})
    client.post("/api/costs", [{"task_id": "T1", "model": OPUS, "agent": "lobster-swe-t1"}] * 5
                + [{"model": HAIKU, "agent": "lobboss"}] * 2)
    ids = lambda response: [e["id"] for e in response.json]  # noqa: E731
    assert len(client.get(f"{api}/costs?task_id=T1").json) == 5
    assert len(client.get(f"{api}/costs?model={HAIKU}").json) == 2
    assert len(client.get(f"{api}/costs?agent=lobboss&model={OPUS}").json) == 0
    assert client.get(f"{api}/costs?since=2000-01-01&until=2000-01-02").json == []
    first = client.get(f"{api}/costs?task_id=T1&limit=3")
    link = re.fullmatch(r'<([^>]+)>; rel="next"', first.headers["link"]).group(1)
    assert link.startswith(f"{api}/costs?") and "task_id=T1" in link
    second = client.get(link)
    assert ids(first) + ids(second) == ids(client.get(f"{api}/costs?task_id=T1"))
    assert len(ids(second)) == 2 and "link" not in second.headers


@pytest.mark.parametrize("query, field", [
    ("task=T1", "task"), ("limit=0", "limit"), ("limit=x", "limit"), ("after=-1", "after"),
    ("since=soon", "since"), ("model=", "model"), ("model=a&model=b", "model"),
    ("after=99999999999999999999", "after"),  # beyond bigint: bad input, not a database error
])
def test_listing_refuses_bad_parameters(client, query, field):
    assert_error(client.get(f"/api/costs?{query}"), 422, "invalid", field)


def test_listing_by_an_unknown_task_is_404(client):
    assert_error(client.get("/api/costs?task_id=T9"), 404, "not_found")


def test_summary_has_since_until_totals_and_keyed_groups(client, api):
    for name, kind in (("a", "swe"), ("b", "research")):
        client.post("/api/tasks", {"name": name, "type": kind})
    client.post("/api/costs", [
        {"task_id": "T1", "model": OPUS, "agent": "lobster-swe-t1", "input_tokens": 100, "output_tokens": 10,
         "cost_usd": 0.5, "created_at": "2026-02-10T10:00:00Z"},
        {"task_id": "T2", "model": HAIKU, "agent": "lobster-research-t2", "input_tokens": 50, "cost_usd": 0.25,
         "created_at": "2026-02-11T10:00:00Z"},
        {"model": HAIKU, "agent": "lobboss", "cost_usd": 0.125, "created_at": "2026-02-11T11:00:00Z"},
        {"model": HAIKU, "cost_usd": 100, "created_at": "2026-03-01T00:00:00Z"},  # outside the range
    ])
    window = "since=2026-02-01T00:00:00Z&until=2026-03-01T00:00:00Z"
    summary = client.get(f"{api}/costs/summary?{window}&group_by=model").json
    assert (summary["since"], summary["until"], summary["group_by"]) == (
        "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z", "model")
    assert {k: summary[k] for k in ("cost_usd", "input_tokens", "output_tokens", "events")} == {
        "cost_usd": 0.875, "input_tokens": 150, "output_tokens": 10, "events": 3}
    assert [(g["key"], g["cost_usd"], g["events"]) for g in summary["groups"]] == [(OPUS, 0.5, 1), (HAIKU, 0.375, 2)]
    assert set(summary["groups"][0]) == {"key"} | TOTAL_KEYS
    keys = lambda group_by: [g["key"] for g in client.get(  # noqa: E731
        f"{api}/costs/summary?{window}&group_by={group_by}").json["groups"]]
    assert keys("task") == ["T1", "T2", None]
    assert keys("task_type") == ["swe", "research", None]
    assert keys("agent") == ["lobster-swe-t1", "lobster-research-t2", "lobboss"]
    assert keys("day") == ["2026-02-10", "2026-02-11"]
    one = client.get(f"{api}/costs/summary?{window}&task_id=T2").json
    assert (one["cost_usd"], one["events"], one["groups"]) == (0.25, 1, [])


def test_summary_periods_count_back_from_now(client):
    client.post("/api/costs", [{"model": OPUS, "cost_usd": 1},
                               {"model": OPUS, "cost_usd": 2, "created_at": "2000-01-01T00:00:00Z"}])
    for period in ("day", "week", "month"):
        assert client.get(f"/api/costs/summary?period={period}").json["cost_usd"] == 1
    assert client.get("/api/costs/summary").json["events"] == 1  # a day by default


@pytest.mark.parametrize("query, field", [
    ("period=year", "period"), ("period=week&since=2026-01-01", "period"), ("group_by=colour", "group_by"),
    ("since=2026-02-02&until=2026-02-01", "since"), ("limit=5", "limit"), ("until=later", "until"),
])
def test_summary_refuses_bad_parameters(client, query, field):
    assert_error(client.get(f"/api/costs/summary?{query}"), 422, "invalid", field)


def test_a_tasks_costs_are_its_totals_split_by_model(client, api):
    client.post("/api/tasks", {"name": "a", "legacy_id": "2026-02-15-unity-ui"})
    client.post("/api/costs", [{"task_id": "T1", "model": OPUS, "cost_usd": 0.5, "input_tokens": 10},
                               {"task_id": "T1", "model": HAIKU, "cost_usd": 0.25, "output_tokens": 7},
                               {"model": HAIKU, "cost_usd": 9}])
    costs = client.get(f"{api}/tasks/2026-02-15-unity-ui/costs").json
    assert costs["task_id"] == "T1"
    assert (costs["cost_usd"], costs["input_tokens"], costs["output_tokens"], costs["events"]) == (0.75, 10, 7, 2)
    assert [(m["key"], m["cost_usd"]) for m in costs["models"]] == [(OPUS, 0.5), (HAIKU, 0.25)]
    assert_error(client.get(f"{api}/tasks/T2/costs"), 404, "not_found")
    assert_error(client.get(f"{api}/tasks/T1/costs?period=week"), 422, field="period")


# -- prices ---------------------------------------------------------------------------------
def test_prices_in_effect_now_are_the_seeded_ones(client, api):
    prices = client.get(f"{api}/costs/prices").json
    assert {p["model"]: (p["input_usd_per_mtok"], p["output_usd_per_mtok"]) for p in prices} == {
        OPUS: (5, 25), SONNET: (3, 15), HAIKU: (0.8, 4)}
    assert [p["model"] for p in client.get(f"{api}/costs/prices?model={OPUS}").json] == [OPUS]


def test_a_new_price_costs_later_events_and_shows_in_the_history(client, api):
    response = client.post(f"{api}/costs/prices", {"model": SONNET, "input_usd_per_mtok": 6,
                                                   "output_usd_per_mtok": 30, "actor": "lead",
                                                   "effective_from": "2026-02-20T00:00:00Z"})
    assert response.status == 201
    price = response.json
    assert (price["model"], price["input_usd_per_mtok"], price["cache_read_usd_per_mtok"]) == (SONNET, 6, 0.6)
    before = client.post("/api/costs", {"model": SONNET, "input_tokens": 10**6, "created_at": "2026-02-19T23:00:00Z"})
    after = client.post("/api/costs", {"model": SONNET, "input_tokens": 10**6, "created_at": "2026-02-20T01:00:00Z"})
    assert (before.json["cost_usd"], after.json["cost_usd"]) == (3, 6)
    assert after.json["price_id"] == price["id"]
    history = client.get(f"{api}/costs/prices?model={SONNET}&history=true").json
    assert [p["input_usd_per_mtok"] for p in history] == [3, 6]
    at_19th = client.get(f"{api}/costs/prices?model={SONNET}&at=2026-02-19T00:00:00Z").json
    assert [p["input_usd_per_mtok"] for p in at_19th] == [3]
    again = client.post(f"{api}/costs/prices", {"model": SONNET, "input_usd_per_mtok": 7, "output_usd_per_mtok": 30,
                                                "effective_from": "2026-02-20T00:00:00Z"})
    assert_error(again, 409, "conflict")


@pytest.mark.parametrize("body, field", [
    ({"model": OPUS, "input_usd_per_mtok": 0.000005, "output_usd_per_mtok": 25}, "input_usd_per_mtok"),
    ({"model": OPUS, "input_usd_per_mtok": 5, "output_usd_per_mtok": 0.000025}, "output_usd_per_mtok"),
    ({"model": OPUS, "input_usd_per_mtok": 5, "output_usd_per_mtok": 25, "cache_read_usd_per_mtok": 1e-7},
     "cache_read_usd_per_mtok"),
    ({"model": OPUS, "input_usd_per_mtok": 5}, "output_usd_per_mtok"),
    ({"input_usd_per_mtok": 5, "output_usd_per_mtok": 25}, "model"),
    ({"model": OPUS, "input_usd_per_mtok": "five", "output_usd_per_mtok": 25}, "input_usd_per_mtok"),
    ({"model": OPUS, "input_usd_per_mtok": 5, "output_usd_per_mtok": 25, "currency": "EUR"}, "currency"),
])
def test_a_price_per_token_or_otherwise_bad_is_refused_and_changes_nothing(client, body, field):
    before = client.get("/api/costs/prices?history=true").json
    assert_error(client.post("/api/costs/prices", body), 422, "invalid", field)
    assert client.get("/api/costs/prices?history=true").json == before


@pytest.mark.parametrize("query, field", [("history=maybe", "history"), ("at=soon", "at"),
                                          ("history=true&at=2026-01-01", "at"), ("all=1", "all")])
def test_price_listing_refuses_bad_parameters(client, query, field):
    assert_error(client.get(f"/api/costs/prices?{query}"), 422, "invalid", field)


# -- audits ---------------------------------------------------------------------------------
def submit(client, findings, api="/api", **options):
    return client.post(f"{api}/audits", {"audit_type": "security", "findings": findings, **options})


def test_an_audit_run_says_what_it_created_and_makes_a_fix_task_for_a_critical_finding(client, api):
    response = submit(client, [{"severity": "critical", "title": "token in logs", "target": "lobwife"},
                               {"severity": "info", "title": "old base image"}], api=api, run_id="run-1",
                      actor="auditor")
    assert response.status == 200
    result = response.json
    assert (result["audit_type"], result["run_id"]) == ("security", "run-1")
    assert [f["title"] for f in result["created"]] == ["token in logs", "old base image"]
    assert result["updated"] == [] and result["resolved"] == []
    critical = result["created"][0]
    assert set(critical) == FINDING_KEYS
    assert (critical["status"], critical["occurrences"], critical["fix_task_id"]) == ("open", 1, "T1")
    (task,) = result["tasks"]
    assert (task["task_id"], task["type"], task["priority"]) == ("T1", "system", "high")
    assert client.get("/api/tasks/T1").json["name"].startswith("Fix security finding")


def test_a_finding_seen_again_is_updated_raised_and_gets_one_fix_task(client):
    submit(client, [{"severity": "warning", "title": "open port", "target": "node-1"}])
    again = submit(client, [{"severity": "critical", "title": "open port", "target": "node-1"}]).json
    assert again["created"] == []
    (finding,) = again["updated"]
    assert (finding["occurrences"], finding["severity"], finding["fix_task_id"]) == (2, "critical", "T1")
    third = submit(client, [{"severity": "warning", "title": "open port", "target": "node-1"}]).json
    assert (third["updated"][0]["severity"], third["updated"][0]["occurrences"]) == ("critical", 3)
    assert third["tasks"] == [] and len(client.get("/api/v1/tasks").json) == 1
    assert len(client.get("/api/audits").json) == 1


def test_close_missing_resolves_what_the_run_did_not_report(client):
    submit(client, [{"severity": "info", "title": "a"}, {"severity": "info", "title": "b"}])
    result = submit(client, [{"severity": "info", "title": "a"}], close_missing=True, run_id="run-2").json
    (resolved,) = result["resolved"]
    assert (resolved["title"], resolved["status"]) == ("b", "resolved")
    assert resolved["resolved_at"] is not None and "run-2" in resolved["resolution"]


def test_listing_findings_every_status_unless_asked_and_resolving_one(client, api):
    submit(client, [{"severity": "info", "title": "a"}, {"severity": "warning", "title": "b"}])
    client.post("/api/audits", {"audit_type": "docs", "findings": [{"severity": "info", "title": "c"}]})
    response = client.patch(f"{api}/audits/2", {"status": "resolved", "resolution": "fixed in #12",
                                                "actor": "lobster-swe-t3"})
    assert response.status == 200
    finding = response.json
    assert (finding["id"], finding["status"], finding["resolution"], finding["resolved_by"]) == (
        2, "resolved", "fixed in #12", "lobster-swe-t3")
    assert finding["resolved_at"] is not None
    titles = lambda query: [f["title"] for f in client.get(f"{api}/audits{query}").json]  # noqa: E731
    assert titles("") == ["a", "b", "c"]
    assert titles("?status=open") == ["a", "c"]
    assert titles("?status=resolved") == ["b"]
    assert titles("?audit_type=security&severity=info") == ["a"]
    assert titles("?since=2000-01-01&until=2000-01-02") == []
    page = client.get(f"{api}/audits?limit=2")
    assert "after=2" in page.headers["link"]
    ignored = client.patch(f"{api}/audits/1", {"status": "ignored", "resolution": "accepted risk"}).json
    assert (ignored["status"], ignored["resolved_at"]) == ("ignored", None)


@pytest.mark.parametrize("body, field", [
    ({"findings": []}, "audit_type"),
    # With close_missing, a run read as clean would resolve every open finding: refused instead.
    ({"audit_type": "security", "close_missing": True}, "findings"),
    ({"audit_type": "security", "findings": None, "close_missing": True}, "findings"),
    ({"audit_type": "security", "findings": "", "close_missing": True}, "findings"),
    ({"audit_type": "security", "findings": {}, "close_missing": True}, "findings"),
    ({"audit_type": "Security Audit", "findings": []}, "audit_type"),
    ({"audit_type": "security", "findings": [], "close_missing": "yes"}, "close_missing"),
    ({"audit_type": "security", "findings": [], "when": "now"}, "when"),
])
def test_bad_audit_runs_are_422_and_change_nothing(client, body, field):
    submit(client, [{"severity": "info", "title": "stays open"}])
    assert_error(client.post("/api/audits", body), 422, "invalid", field)
    assert [f["status"] for f in client.get("/api/audits").json] == ["open"]


def test_a_bad_finding_in_a_run_names_its_index_and_nothing_is_stored(client):
    body = assert_error(submit(client, [{"severity": "info", "title": "fine"}, {"severity": "urgent", "title": "x"}]),
                        422, "invalid", "severity")
    assert body["index"] == 1
    assert client.get("/api/audits").json == [] and client.get("/api/v1/tasks").json == []


def test_an_empty_run_is_a_clean_run(client):
    submit(client, [{"severity": "info", "title": "a"}])
    result = submit(client, [], close_missing=True).json
    assert [f["title"] for f in result["resolved"]] == ["a"]


@pytest.mark.parametrize("target, body, status, field", [
    ("/api/audits/1", {"status": "done"}, 422, "status"),
    ("/api/audits/1", {"resolution": "x"}, 422, "status"),
    ("/api/audits/1", {"status": "resolved", "note": "x"}, 422, "note"),
    ("/api/audits/9", {"status": "resolved"}, 404, None),
    ("/api/audits/0", {"status": "resolved"}, 404, None),
    ("/api/audits/abc", {"status": "resolved"}, 404, None),
    ("/api/audits/99999999999999999999999", {"status": "resolved"}, 404, None),
])
def test_bad_finding_updates_are_refused_and_change_nothing(client, target, body, status, field):
    submit(client, [{"severity": "info", "title": "a"}])
    assert_error(client.patch(target, body), status, field=field)
    assert client.get("/api/audits").json[0]["status"] == "open"


# -- the OpenAPI schemas hold what the library takes ----------------------------------------
def test_openapi_schemas_list_the_fields_the_api_gives(client):
    # What requests take is derived from the library's tables (see test_http.py's check of
    # every request body against the API); what answers hold is written by hand: checked here.
    schemas = client.get("/api/openapi.json").json["components"]["schemas"]
    props = lambda name: set(schemas[name]["properties"])  # noqa: E731
    assert props("CostEvent") == EVENT_KEYS
    assert props("AuditFinding") == FINDING_KEYS
    assert props("CostSummary") == {"since", "until", "group_by", "groups", "pruned_before"} | TOTAL_KEYS
    assert set(client.get("/api/costs/summary").json) == props("CostSummary")
    event = client.post("/api/costs", {"model": OPUS}).json
    assert set(event) == props("CostEvent")
    price = client.get("/api/costs/prices").json[0]
    assert set(price) == props("Price")
