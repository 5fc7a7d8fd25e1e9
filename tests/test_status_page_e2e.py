"""The status page in a real browser: Debian's chromium driven by Selenium (chromium-driver), against the
daemon as a subprocess reading a real Prometheus that holds the demo's 31 days of history and scrapes a
live service whose canary fails mid-test. Every wait is bounded.

What a person relies on: every SLO is on the overview with the API's numbers, the charts are drawn, an
incident appears within two refreshes of a canary failing, the buttons act, nothing errs in the console
and no request leaves the daemon. Screenshots go to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import asyncio
import shutil
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from budgetguard.engine import Engine
from budgetguard.loader import load_paths
from budgetguard.sources.prometheus import PrometheusConfig, PrometheusSource
from budgetguard.store import Store
from lab.fakes import WebhookReceiver
from lab.prometheus import PrometheusLab
from lab.target import MetricsTarget, metrics_target
from tests.conftest import DemoTsdb, LabFactory
from tests.test_daemon import DaemonProcess, wait_for

pytestmark = pytest.mark.prometheus

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"
TOKEN = "status-page-token-7f3a"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

SHOP = """
version: budgetguard/v1
service: shop
labels:
  team: storefront
slos:
  - name: canary-availability
    description: Shop requests answer without a server error, each version judged on its own.
    objective: 99.9
    sli:
      events:
        error_query: sum by (version) (rate(http_requests_total{job="shop",code="500"}[{{.window}}]))
        total_query: sum by (version) (rate(http_requests_total{job="shop"}[{{.window}}]))
    canary:
      label: version
      baseline: v1
      windows: [10s, 30s]
      resolve_after: 1m
      affected_by: [route]
      notify: [hook]
"""

CONFIG = """
delivery: {{backoff_base: 1s, backoff_max: 2s}}
actions:
  hook:
    type: webhook
    url: {url}
    secret: {secret}
"""


def chromium_missing() -> str | None:
    for binary in ("chromium", "chromedriver"):
        if shutil.which(binary) is None:
            return (
                f"{binary} is not installed: apt-get install chromium chromium-driver (scripts/setup --dev)"
            )
    return None


@pytest.fixture
def browser(real_processes: None) -> Iterator[WebDriver]:
    missing = chromium_missing()
    if missing:
        pytest.fail(missing, pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    # Nothing but the daemon: no component updates, no safe-browsing or metrics pings of the browser.
    options.add_argument("--disable-background-networking")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        options=options, service=Service(shutil.which("chromedriver") or "chromedriver")
    )
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def target() -> Iterator[MetricsTarget]:
    with metrics_target() as live:
        live.set_stream({"version": "v1", "route": "/pay"}, requests_per_second=30, error_ratio=0.0)
        live.set_stream({"version": "v1", "route": "/cart"}, requests_per_second=20, error_ratio=0.0)
        yield live


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    # The first attempt fails: the incident page then has a delivery with more than one attempt.
    with WebhookReceiver(secret=SECRET, script=[503]) as fake:
        yield fake


@pytest.fixture
def prometheus(prometheus_lab: LabFactory, demo_tsdb: DemoTsdb, target: MetricsTarget) -> PrometheusLab:
    return prometheus_lab(blocks_from=demo_tsdb.blocks, scrape_targets={"shop": [target.address]})


def seed_store(db: Path, slo_dir: Path, prometheus_url: str, end: datetime) -> int:
    """A daemon that has run for weeks: the history's SLOs evaluated against Prometheus at past instants
    (every 12 hours for 29 days, every 15 minutes for the last 6 hours) and recorded as the daemon does."""
    loaded = load_paths([slo_dir])
    assert loaded.ok, loaded.problems
    instants = sorted(
        {end - timedelta(hours=12 * i) for i in range(1, 59)}
        | {end - timedelta(minutes=15 * i) for i in range(1, 25)}
    )

    async def evaluate() -> int:
        source = PrometheusSource(PrometheusConfig(url=prometheus_url))
        engine = Engine(source)
        try:
            with Store(db) as store:
                for at in instants:
                    store.record_cycle(await engine.evaluate_all(loaded.slos, at))
        finally:
            await source.aclose()
        return len(instants)

    return asyncio.run(evaluate())


@pytest.fixture
def daemon(
    tmp_path: Path, prometheus: PrometheusLab, hook: WebhookReceiver, demo_tsdb: DemoTsdb
) -> Iterator[DaemonProcess]:
    slos = tmp_path / "slos"
    slos.mkdir()
    for name in ("checkout.yaml", "search.sloth.yaml"):
        shutil.copy(REPO / "slos" / name, slos / name)
    seed_store(tmp_path / "bg.db", slos, prometheus.url, datetime.now(tz=UTC))
    (slos / "shop.yaml").write_text(textwrap.dedent(SHOP))
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent(CONFIG.format(url=hook.endpoint, secret=SECRET)))
    process = DaemonProcess(
        slos, prometheus.url, tmp_path / "bg.db", extra_env={"BUDGETGUARD_API_TOKEN": TOKEN}, config=config
    )
    try:
        wait_for(
            lambda: process.get("/healthz").status_code == 200, 30, f"the daemon; log:\n{process.logs()}"
        )
        wait_for(
            lambda: process.get("/readyz").status_code == 200, 60, f"the first cycle; log:\n{process.logs()}"
        )
        yield process
    finally:
        process.close()


def api(daemon: DaemonProcess, path: str) -> Any:
    answer = httpx.get(f"{daemon.url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    answer.raise_for_status()
    return answer.json()


def shoot(driver: WebDriver, name: str, *, width: int = 1280, dark: bool = False) -> Path:
    """A full-page screenshot at ``width`` (height grown to the page) in the light or dark scheme."""
    scheme = "dark" if dark else "light"
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
    )
    driver.set_window_size(width, 900)
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, min(max(height + 140, 600), 4000))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]}
    )
    driver.set_window_size(1280, 900)
    return path


def refreshes(driver: WebDriver) -> int:
    return int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-refreshes") or 0)


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def requested(driver: WebDriver) -> list[str]:
    """Every URL the page loaded or fetched, from the browser's own performance entries."""
    script = (
        "return performance.getEntriesByType('navigation').concat("
        "performance.getEntriesByType('resource')).map(function (e) { return e.name; });"
    )
    return list(driver.execute_script(script))


def overview_rows(driver: WebDriver) -> list[dict[str, Any]]:
    """The overview's rows read in one script: a refresh may swap them between two WebDriver calls."""
    script = """
        return Array.from(document.querySelectorAll('table.slos tbody tr[data-slo]')).map(function (row) {
          return {
            slo: row.getAttribute('data-slo'),
            verdict: row.getAttribute('data-verdict'),
            budget: row.querySelector('.pct').textContent,
            data_budget: row.querySelector('.pct').getAttribute('data-budget'),
            spark: row.querySelectorAll('svg.spark .spark-end').length > 0
          };
        });
    """
    return list(driver.execute_script(script))


def budget_text(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio * 100:.1f}%"


def wait_in_browser(driver: WebDriver, check: Any, timeout: float, what: str) -> Any:
    def attempt() -> Any:
        try:
            return check()
        except WebDriverException:
            return None

    return wait_for(attempt, timeout, what)


def test_the_status_page_shows_the_daemon_in_a_real_browser(
    daemon: DaemonProcess, browser: WebDriver, target: MetricsTarget, hook: WebhookReceiver
) -> None:
    seen: list[str] = []

    # Without the token the page asks for it, as /api/ does; with it, the overview opens.
    browser.get(f"{daemon.url}/?refresh=1")
    assert "needs its API token" in browser.find_element(By.TAG_NAME, "h1").text
    shoot(browser, "login")
    field = browser.find_element(By.ID, "token")
    field.send_keys(TOKEN)
    field.send_keys(Keys.ENTER)
    wait_in_browser(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "table.slos"), 15, "the overview")
    seen += requested(browser)

    # Every SLO of the API, with the same verdict and the same budget left.
    slos = api(daemon, "/api/v1/slos")["slos"]
    assert len(slos) == 5

    def rows_match() -> bool:
        rows = {row["slo"]: row for row in overview_rows(browser)}
        fresh = api(daemon, "/api/v1/slos")["slos"]
        for slo in fresh:
            row = rows.get(f"{slo['service']}/{slo['slo']}")
            if row is None or row["budget"] != budget_text(slo["budget_remaining"]):
                return False
            if row["verdict"] != slo["verdict"]:
                return False
        return len(rows) == len(fresh)

    wait_in_browser(browser, rows_match, 20, "every SLO with the API's numbers")
    checkout = next(s for s in slos if s["slo"] == "requests-availability" and s["service"] == "checkout")
    assert checkout["budget_remaining"] is not None and 0 < checkout["budget_remaining"] < 1

    # Sparklines from the store: drawn once the background read is done, for every SLO with a budget.
    measured = {f"{s['service']}/{s['slo']}" for s in slos if s["budget_remaining"] is not None}
    assert len(measured) >= 3

    def sparks_drawn() -> bool:
        return {row["slo"] for row in overview_rows(browser) if row["spark"]} >= measured

    wait_in_browser(browser, sparks_drawn, 20, "a sparkline for every SLO")
    shoot(browser, "overview")
    shoot(browser, "overview-dark", dark=True)
    shoot(browser, "overview-phone", width=390)

    # Keyboard: the first Tab reaches the skip link, "/" the search box.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("class") == "skip"
    browser.find_element(By.TAG_NAME, "body").send_keys("/")
    assert browser.switch_to.active_element.get_attribute("type") == "search"

    # Filter by service, then sort by budget: the rows follow, without reloading the page.
    marker = browser.execute_script("window.__kept = 42; return window.__kept;")
    browser.switch_to.active_element.send_keys("search")
    wait_in_browser(
        browser,
        lambda: (
            {
                r.get_attribute("data-slo").split("/")[0]
                for r in browser.find_elements(By.CSS_SELECTOR, "table.slos tbody tr")
            }
            == {"search"}
        ),
        10,
        "only search's SLOs",
    )
    assert browser.execute_script("return window.__kept;") == marker  # the same page, not a reload
    browser.find_element(By.CSS_SELECTOR, "input[type=search]").clear()
    browser.get(f"{daemon.url}/?refresh=1&sort=budget")
    known = [float(r["data_budget"]) for r in overview_rows(browser) if r["data_budget"]]
    assert known == sorted(known)

    # One SLO: the burn-down joins Prometheus' history to the store's, burn rates per tier are drawn.
    browser.get(f"{daemon.url}/slos/checkout/requests-availability?refresh=5")
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    assert len(charts) >= 5  # the burn-down and one per tier
    burndown = charts[0]
    assert len(burndown.find_elements(By.CSS_SELECTOR, "polyline.line")) >= 1
    assert "from Prometheus" in browser.find_element(By.CSS_SELECTOR, "figure.chart .legend").text
    page_budget = browser.find_element(By.CSS_SELECTOR, ".budget-big .pct").text
    fresh = api(daemon, "/api/v1/slos/checkout/requests-availability")["slo"]
    assert page_budget in (budget_text(fresh["budget_remaining"]), budget_text(checkout["budget_remaining"]))
    seen += requested(browser)
    shoot(browser, "slo")
    shoot(browser, "slo-dark", dark=True)
    shoot(browser, "slo-phone", width=390)

    # The canary starts failing while the overview refreshes every second: the incident is on the page
    # within two refreshes of the API having it.
    browser.get(f"{daemon.url}/?refresh=1")
    wait_in_browser(browser, lambda: refreshes(browser) >= 1, 10, "the first refresh")
    target.set_stream({"version": "v2", "route": "/pay"}, requests_per_second=6, error_ratio=0.3)
    target.set_stream({"version": "v2", "route": "/cart"}, requests_per_second=4, error_ratio=0.05)
    wait_for(
        lambda: api(daemon, "/api/v1/incidents?state=open")["incidents"],
        60,
        f"an incident; log:\n{daemon.logs()}",
    )
    at_incident = refreshes(browser)
    wait_in_browser(
        browser,
        lambda: browser.find_elements(By.CSS_SELECTOR, ".attention li.incident"),
        10,
        "the incident on the page",
    )
    assert refreshes(browser) - at_incident <= 2
    [incident] = api(daemon, "/api/v1/incidents?state=open")["incidents"]
    assert incident["slo_id"] in browser.find_element(By.CSS_SELECTOR, ".attention li.incident").text
    seen += requested(browser)
    shoot(browser, "overview-incident")

    # The canary's SLO page: each version against the baseline, window by window.
    browser.get(f"{daemon.url}/slos/shop/canary-availability?refresh=5")
    [v2] = browser.find_elements(By.CSS_SELECTOR, "article.canary[data-canary='v2']")
    assert "burning" in v2.text and "against v1" in v2.text
    headers = [th.text.lower() for th in v2.find_elements(By.CSS_SELECTOR, "thead th")]
    assert {"95% bounds", "baseline", "requests still needed"} <= set(headers)
    shoot(browser, "slo-canary")

    # The incident: timeline, who is affected, deliveries with their attempts; the viewer gave the
    # token, so the buttons are there and act.
    hook.wait_for(1, accepted=True, timeout=timedelta(seconds=30))
    wait_for(lambda: api(daemon, f"/api/v1/incidents/{incident['id']}").get("affected"), 20, "the breakdown")
    browser.get(f"{daemon.url}/incidents/{incident['id']}?refresh=2")
    wait_in_browser(
        browser,
        lambda: "delivered" in browser.find_element(By.CSS_SELECTOR, "table.deliveries").text,
        20,
        "the delivery outcome",
    )
    deliveries = browser.find_element(By.CSS_SELECTOR, "table.deliveries").text
    assert "hook" in deliveries and "delivered" in deliveries
    assert "route=/pay" in browser.find_element(By.ID, "live").text
    assert "opened" in browser.find_element(By.CSS_SELECTOR, "ol.timeline").text
    shoot(browser, "incident")
    shoot(browser, "incident-dark", dark=True)
    browser.find_element(By.XPATH, "//button[text()='Acknowledge']").click()
    wait_in_browser(
        browser, lambda: api(daemon, f"/api/v1/incidents/{incident['id']}")["acknowledged_by"], 10, "the ack"
    )
    assert "acknowledged" in browser.find_element(By.CSS_SELECTOR, "ol.timeline").text
    seen += requested(browser)

    # The list of incidents: the open one, acknowledged.
    browser.get(f"{daemon.url}/incidents")
    [row] = browser.find_elements(By.CSS_SELECTOR, "table.incidents tbody tr[data-state='open']")
    assert "acknowledged" in row.text and "version=v2" in row.text
    seen += requested(browser)
    shoot(browser, "incidents")

    # After forgetting the token the buttons are gone and the page asks again.
    browser.find_element(By.XPATH, "//button[text()='Forget the token']").click()
    wait_in_browser(browser, lambda: browser.find_elements(By.ID, "token"), 10, "the login form")
    assert not browser.find_elements(By.XPATH, "//button[text()='Resolve']")

    # Nothing went wrong in the console, and nothing was asked of anyone but the daemon.
    assert console_errors(browser) == []
    assert seen and all(url.startswith(daemon.url + "/") for url in seen), [
        url for url in seen if not url.startswith(daemon.url + "/")
    ]
