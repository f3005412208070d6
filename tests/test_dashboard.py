"""The web dashboard: every page over WSGI on every backend, its admin forms and who may use
them, and in a real headless Chromium (selenium + Debian's chromium and chromium-driver):
pages load with their rows, the overview follows the feed live, the console stays clean."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest

from lobstore.adapters.http import make_app
from lobstore.adapters.http.auth import AuthSettings

from live_server import LiveServer
from wsgi_client import WsgiClient

SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
PAGES = {"overview": "/", "tasks": "/ui/tasks", "task": "/ui/tasks/T1", "costs": "/ui/costs",
         "audits": "/ui/audits", "jobs": "/ui/jobs", "broker": "/ui/broker"}


def fleet(store):
    """A small fleet: tasks in several states, costs, a finding, a job, a registration."""
    first = store.tasks.create(name="fix the login bug", type="swe", repos=["minsley/lobmob"])
    store.tasks.update(first.ref, status="active", assigned_to="lobster-swe-1")
    store.broker.register(first.ref, repos=["minsley/lobmob"])
    done = store.tasks.create(name="write the release notes", type="research")
    store.tasks.update(done.ref, status="active", assigned_to="lobster-research-2")
    store.tasks.update(done.ref, status="completed")
    store.tasks.create(name="queued work", type="swe")
    store.costs.record(model="claude-sonnet-4", task_id=first.ref, agent="lobster-swe-1",
                       input_tokens=120_000, output_tokens=8_000, cost_usd=1.25)
    store.costs.record(model="claude-opus-4", task_id=done.ref, input_tokens=50_000, output_tokens=2_000, cost_usd=2.5)
    store.audits.submit("docs", [{"severity": "critical", "title": "stale runbook", "target": "docs/ops.md"}])
    store.jobs.record_run("task-manager", status="success")
    return first


def test_every_page_renders_its_rows(store):
    first = fleet(store)
    client = WsgiClient(make_app(store))
    pages = {name: client.get(path) for name, path in PAGES.items()}
    assert all(r.status == 200 and r.headers["content-type"].startswith("text/html") for r in pages.values())
    text = {name: r.body.decode() for name, r in pages.items()}
    assert "lobster-swe-1" in text["overview"] and "stale runbook" in text["overview"]
    assert "write the release notes" in text["overview"]  # a recent completion
    assert "$3.75" in text["overview"]  # spent today
    assert "estimate + 15 min" in text["overview"]  # the task manager's warning threshold
    # The live page listens to the sweep's and the claims' moves too, not only PATCHes.
    assert all(f'"{kind}"' in text["overview"] for kind in ("updated", "claimed", "requeued", "orphaned"))
    assert all(name in text["tasks"] for name in ("fix the login bug", "queued work"))
    assert "minsley/lobmob" in text["task"] and "claude-sonnet-4" in text["task"] and "created" in text["task"]
    assert "<svg" in text["costs"] and "claude-opus-4" in text["costs"]
    assert f"/ui/tasks/{first.ref}" in text["costs"] and "lobster-swe-1" in text["costs"]  # top task, agent
    assert "stale runbook" in text["audits"] and "task-manager" in text["jobs"]
    assert first.ref in text["broker"]


def test_task_list_filters_and_pages_newest_first(store):
    for i in range(60):
        store.tasks.create(name=f"task {i}", type="swe" if i % 2 else "research")
    client = WsgiClient(make_app(store))
    first = client.get("/ui/tasks?type=swe").body.decode()
    assert "task 59" in first and "task 58" not in first
    page = client.get("/ui/tasks").body.decode()
    assert page.index("task 59") < page.index("task 58") and "task 9" not in page  # 50 a page
    older = client.get("/ui/tasks?after=11").body.decode()
    assert "task 9" in older and "task 10" not in older
    assert client.get("/ui/tasks?status=nope").status == 422
    assert client.get("/ui/tasks/T999").status == 404


def test_task_list_finds_words_in_names_and_slugs(store):
    store.tasks.create(name="Fix the LOGIN bug", slug="fix-login")
    store.tasks.create(name="Make it 50% faster", slug="speed")
    store.tasks.create(name="rename snake_case fields", slug="rename")
    store.tasks.create(name="other work", slug="other")
    client = WsgiClient(make_app(store))
    found = client.get("/ui/tasks?text=login").body.decode()
    assert "Fix the LOGIN bug" in found and "other work" not in found
    # % and _ are the words themselves, not wildcards.
    assert [t.name for t in store.tasks.list(text="%")] == ["Make it 50% faster"]
    assert [t.name for t in store.tasks.list(text="e_c")] == ["rename snake_case fields"]
    assert [t.name for t in store.tasks.list(text="SPEED")] == ["Make it 50% faster"]  # the slug


def test_admin_forms_need_admin_and_this_site(store):
    fleet(store)
    reader = store.credentials.create("viewer", scopes=["read"]).secret
    admin = store.credentials.create("ops", scopes=["admin"]).secret
    client = WsgiClient(make_app(store, auth=AuthSettings()))

    def basic(secret):
        return {"Authorization": "Basic " + base64.b64encode(f"me:{secret}".encode()).decode()}

    refused = client.get("/")
    assert refused.status == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert client.get("/", headers=basic(reader)).status == 200
    form = {"body": b"action=resolve&resolution=fixed", "content_type": "application/x-www-form-urlencoded"}
    assert client.request("POST", "/ui/audits/1", headers=basic(reader), **form).status == 403
    # From another site, a sandboxed frame (Origin: null), or saying nothing: refused.
    for where in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {},
                  {"Sec-Fetch-Site": "cross-site", "Origin": "http://127.0.0.1"}):
        cross = client.request("POST", "/ui/audits/1", headers={**basic(admin), **where}, **form)
        assert cross.status == 403 and store.audits.get(1).status == "open", where
        refused = client.request("POST", "/ui/jobs/task-manager/disable", headers={**basic(admin), **where})
        assert refused.status == 403 and store.jobs.get("task-manager").enabled, where
    here = {**basic(admin), "Origin": "http://127.0.0.1"}  # the WSGI test client's host
    done = client.request("POST", "/ui/audits/1", headers=here, **form)
    assert done.status == 303 and store.audits.get(1).status == "resolved"
    off = client.request("POST", "/ui/jobs/task-manager/disable", headers={**basic(admin), "Sec-Fetch-Site": "same-origin"})
    assert off.status == 303 and not store.jobs.get("task-manager").enabled
    bad = client.request("POST", "/ui/jobs/task-manager/explode", headers=here)
    assert bad.status == 422 and bad.json["field"] == "action"


# -- in a real browser -------------------------------------------------------------------------
def _browser():
    """Headless Chromium through selenium, or skip saying what is missing."""
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("browser tests need selenium: pip install 'lobstore[test]'")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        if os.environ.get("CI"):
            pytest.fail("CI is set but chromium / chromedriver are missing (.ci/run installs them)")
        pytest.skip("no browser: apt-get install chromium chromium-driver to run the dashboard in headless Chromium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


@pytest.fixture
def browser():
    driver = _browser()
    yield driver
    driver.quit()


@pytest.mark.backends("sqlite-file", "postgresql")
def test_in_chromium_every_page_loads_and_the_overview_is_live(store, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    first = fleet(store)
    server = LiveServer(store)
    try:
        for name, path in PAGES.items():
            browser.get(server.url + path)
            assert browser.find_elements(By.CSS_SELECTOR, "main table tr"), name
            if os.environ.get("LOBSTORE_SCREENSHOTS"):
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
        browser.get(server.url + "/ui/tasks?status=active")
        assert [row.text.split()[0] for row in browser.find_elements(By.CSS_SELECTOR, "#tasks tr")[1:]] == [first.ref]

        browser.get(server.url + "/")
        WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "live").get_attribute("class") == "on")
        browser.execute_script("window.notReloaded = true")
        active = browser.find_element(By.CSS_SELECTOR, '[data-status="active"] b').text
        assert active == "1"
        WsgiClient(server.app).patch(f"/api/v1/tasks/{first.ref}", json={"status": "completed"})
        WebDriverWait(browser, 10).until(
            lambda b: b.find_element(By.CSS_SELECTOR, '[data-status="active"] b').text == "0")
        assert browser.execute_script("return window.notReloaded") is True  # updated in place
        assert "fix the login bug" in browser.find_element(By.ID, "completed").text
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []
    finally:
        server.stop()


def test_the_task_page_links_the_task_file_the_vault_sync_writes(store, tmp_path):
    import subprocess

    from lobstore.sync.daemon import SyncDaemon

    vault = tmp_path / "fleet vault"
    subprocess.run(["git", "init", "-q", "-b", "main", str(vault)], check=True)
    task = store.tasks.create(name="linked", status="active")
    sync = SyncDaemon(store, vault, interval=60)
    page = WsgiClient(make_app(store, sync=sync)).get(f"/ui/tasks/{task.ref}").body.decode()
    path = sync.sync.renderer.task_path(task)
    assert f"<code>{path}</code>" in page and path.endswith(f"/{task.ref}.md")
    assert f'href="obsidian://open?vault=fleet%20vault&amp;file={path.removesuffix(".md").replace("/", "%2F")}"' in page
    alone = WsgiClient(make_app(store)).get(f"/ui/tasks/{task.ref}").body.decode()
    assert "this server runs no vault sync" in alone
