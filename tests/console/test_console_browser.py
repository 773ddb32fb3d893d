"""The console in a real browser: Debian's chromium driven by chromium-driver (selenium), against a real service
with two emulated MicroPython devices over LwM2M on loopback. One service and one browser for the whole module.

Each page is saved as a screenshot (into $CONSOLE_SCREENSHOTS, default a temporary directory; the README's
pictures are made with CONSOLE_SCREENSHOTS=docs/images)."""

import asyncio
import base64
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service as Driver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.service.core import Service
from tinymlaas.web import build_api

from e2e_helpers import wait_for

pytestmark = pytest.mark.xdist_group("e2e")

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "models"
BOARD = "esp32-line-1"
HOSTILE = '"><script>alert(2)</script>'                 # a device's endpoint name
LABELS = ["idle", "<script>alert(1)</script>", 'valve "A"', "pump's", "bearing", "normal"]
HOSTILE_MODEL = "<script>alert(3)</script>'\""
WIDTH = 1440


class Console:
    """The service, its web API with the console, and two devices, on an event loop in a thread."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout=120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def start(self):
        self.svc = await Service(self.tmp / "svc").start("127.0.0.1", 0)
        self.api = build_api(self.svc.server, self.svc, auth=True)
        await self.api.start("127.0.0.1", 0)
        self.base = "http://127.0.0.1:%d" % self.api.port
        _, self.token = self.api.tokens.create("admin", "selenium")
        uri = "coap://127.0.0.1:%d" % self.svc.server.port
        self.devices = [EmulatedDevice(uri, BOARD, profile="esp32", data_dir=self.tmp / "d1").start(),
                        EmulatedDevice(uri, HOSTILE, profile="cortex-m4", flash="4k", data_dir=self.tmp / "d2").start()]
        build = [("tmlb-int8", "tinyml-mpy", {})]
        self.svc.catalog.add(CORPUS / "fc_no_bias_softmax.tflite", "valve-fault", "1", builds=build,
                             task="valve fault classification", labels=LABELS, accuracy=0.91)
        self.svc.catalog.add(CORPUS / "flatten_dense.tflite", HOSTILE_MODEL, "1", builds=build, labels=LABELS[:5])
        await wait_for(lambda: len(self.svc.server.devices()) == 2 and
                       all(r.capabilities for r in self.svc.server.devices()), what="both devices' capabilities")
        self.svc.tag(BOARD, "line-1")
        dep = self.svc.create_deployment("valve-fault", [BOARD, HOSTILE], canary=[BOARD])
        await self.svc.start_deployment(dep)
        return self

    def stop_devices(self):
        # from this thread, while the loop runs: each device's Deregister is answered at once
        for d in getattr(self, "devices", ()):
            d.stop()

    async def stop(self):
        if hasattr(self, "api"):
            await self.api.stop()
        await self.svc.stop()


@pytest.fixture(scope="module")
def console():
    tmp = Path(tempfile.mkdtemp(prefix="tinymlaas-console-"))
    c = Console(tmp)
    try:
        c.run(c.start())
        yield c
    finally:
        if hasattr(c, "svc"):
            c.stop_devices()
            c.run(c.stop())
        c.loop.call_soon_threadsafe(c.loop.stop)
        c.thread.join(10)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=%d,1000" % WIDTH):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Driver(shutil.which("chromedriver") or "/usr/bin/chromedriver"))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots():
    out = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tempfile.mkdtemp(prefix="tinymlaas-console-shots-"))
    out.mkdir(parents=True, exist_ok=True)

    def save(driver, name):
        height = driver.execute_script("return document.documentElement.scrollHeight")
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "captureBeyondViewport": True, "clip": {"x": 0, "y": 0, "width": WIDTH, "height": min(height, 2400), "scale": 1}})
        (out / ("console-%s.png" % name)).write_bytes(base64.b64decode(shot["data"]))

    return save


def until(driver, what, pred, timeout=30):
    # a page that reloads while we poll leaves the element we just found stale: look again at the next poll
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: pred(d), message=what)


def css(driver, selector):
    return driver.find_element(By.CSS_SELECTOR, selector)


def no_script_ran(driver):
    """No alert() from a hostile name, and the only inline <script> elements are JSON data islands."""
    try:
        alert = driver.switch_to.alert
        text = alert.text
        alert.dismiss()
        raise AssertionError("a script from the page's data ran: alert(%r)" % text)
    except NoAlertPresentException:
        pass
    inline = driver.execute_script(
        "return [...document.scripts].filter(s => !s.src && s.type !== 'application/json').length")
    assert inline == 0


def test_sign_in_with_a_token_and_see_the_fleet(console, browser, shots):
    browser.get(console.base + "/")
    until(browser, "the sign-in page", lambda d: "/console/login" in d.current_url)
    shots(browser, "sign-in")
    css(browser, "#token").send_keys("tmla_00000000_not-a-token")
    css(browser, "#signin button").click()
    until(browser, "the refusal", lambda d: "not valid" in css(d, "#signin-error").text)
    token = css(browser, "#token")
    token.clear()
    token.send_keys(console.token)
    css(browser, "#signin button").click()
    until(browser, "the fleet", lambda d: d.find_elements(By.ID, "fleet"))
    rows = {r.get_attribute("data-endpoint"): r for r in browser.find_elements(By.CSS_SELECTOR, "#fleet tbody tr")}
    assert set(rows) == {BOARD, HOSTILE}
    board, hostile = rows[BOARD].text, rows[HOSTILE].text
    assert "online" in board and "ESP32-WROOM-32" in board and "valve-fault" in board and "line-1" in board
    assert HOSTILE in hostile and "update failed" in hostile      # shown as text: its 4 KB flash fits nothing
    no_script_ran(browser)

    css(browser, "#fleet-search").send_keys("wroom")               # search filters as one types
    until(browser, "the search", lambda d: not rows[HOSTILE].is_displayed() and rows[BOARD].is_displayed())
    css(browser, "#fleet-search").clear()
    css(browser, "#fleet-search").send_keys(" ")
    until(browser, "the filter cleared", lambda d: rows[HOSTILE].is_displayed())

    rows[HOSTILE].find_element(By.CSS_SELECTOR, ".pick").click()  # bulk tag
    css(browser, "#bulk-tag").send_keys("quarantine")
    css(browser, "#bulk-add").click()
    until(browser, "the tag", lambda d: "quarantine" in console.svc.tags(HOSTILE))
    until(browser, "the reloaded fleet", lambda d: "quarantine" in css(d, "#fleet").text)
    shots(browser, "fleet")


def test_device_page_reads_3_0_and_runs_an_inference(console, browser, shots):
    browser.get(console.base + "/console/devices/" + BOARD)
    css(browser, 'details[data-path="/3"] > summary').click()
    css(browser, '.read-instance[data-path="/3/0"]').click()
    cell = css(browser, 'tr[data-path="/3/0/1"] .value')
    until(browser, "the read of /3/0", lambda d: cell.text)
    assert cell.text == "ESP32-WROOM-32 (4 MB flash)"
    assert css(browser, 'tr[data-path="/3/0/17"] .value').text == "esp32"
    assert "2.05" in css(browser, "#op-status").text

    count = css(browser, 'tr[data-path="/32770/0/17"]')                  # observe the inference count
    count.find_element(By.CSS_SELECTOR, ".op-observe").click()
    until(browser, "the observation", lambda d: count.find_element(By.CSS_SELECTOR, ".value").text == "0")

    css(browser, "#infer-values").send_keys(" ".join(["0.25"] * 12))
    css(browser, "#infer-keep").click()
    css(browser, "#infer button[type=submit]").click()
    until(browser, "the inference's result", lambda d: css(d, "#infer-error").text == "kept")
    k = int(css(browser, "#infer-class").text)
    assert css(browser, "#infer-label").text == LABELS[k]             # a label with <script> or quotes: as text
    assert "ms on the device" in css(browser, "#infer-latency").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#infer-scores .mono")) == len(LABELS)
    until(browser, "the notification", lambda d: count.find_element(By.CSS_SELECTOR, ".value").text == "1")
    kept = console.svc.telemetry.results(BOARD)
    assert kept[0]["top_class"] == k and kept[0]["label"] == LABELS[k] and len(kept[0]["scores"]) == 6
    no_script_ran(browser)
    shots(browser, "device")
    browser.get(console.base + "/console/devices/" + BOARD)      # the plots and the kept result, server-rendered
    assert len(browser.find_elements(By.CSS_SELECTOR, ".charts polyline.line")) == 5
    assert LABELS[k] in css(browser, "#kept").text


def test_models_fit_matrix_and_explain(console, browser, shots):
    browser.get(console.base + "/console/models")
    assert HOSTILE_MODEL in css(browser, "#models").text
    no_script_ran(browser)
    shots(browser, "models")
    css(browser, "#up-file").send_keys(str(CORPUS / "conv_same_dilated.tflite"))     # upload (admin)
    css(browser, "#up-name").send_keys("conv-uploaded")
    css(browser, "#up-labels").send_keys("a,b")
    css(browser, "#upload button[type=submit]").click()
    until(browser, "the uploaded model's page", lambda d: "/console/models/conv-uploaded" in d.current_url)
    assert "tmlb-int8" in css(browser, "#variants").text and "tflite" in css(browser, "#variants").text
    browser.get(console.base + "/console/models/valve-fault")
    matrix = css(browser, "#fit-matrix").text
    assert "chosen" in matrix and "needs 6224 B of flash for the package, device has 4096 B free" in matrix
    Select(css(browser, "#explain-device")).select_by_value(HOSTILE)
    css(browser, "#explain button[type=submit]").click()
    until(browser, "the explain view", lambda d: "no variant fits" in css(d, "#explain").text)
    no_script_ran(browser)
    shots(browser, "model")


def test_create_a_deployment_and_watch_it_become_active(console, browser, shots):
    browser.get(console.base + "/console/deployments")
    css(browser, "#pick-percent").send_keys("50")                     # half of the fleet, drawn at random
    css(browser, "#pick-percent-go").click()
    assert len([c for c in browser.find_elements(By.CSS_SELECTOR, "#targets .target") if c.is_selected()]) == 1
    css(browser, "#pick-clear").click()
    next(o for o in browser.find_elements(By.CSS_SELECTOR, "#dep-model option")
         if o.get_attribute("value") == HOSTILE_MODEL).click()        # (selenium's Select quotes values badly)
    Select(css(browser, "#pick-tag")).select_by_value("line-1")     # the devices with a tag, the first a canary
    assert "1 device, 1 canary first" in css(browser, "#create-summary").text
    css(browser, "#create-go").click()
    until(browser, "the deployment's page", lambda d: "/console/deployments/" in d.current_url)
    browser.execute_script("window.stayedOnPage = true")
    row = css(browser, '#dep-devices tr[data-endpoint="%s"]' % BOARD)
    until(browser, "the device to become active", lambda d: "active" in row.find_element(By.CSS_SELECTOR, ".state").text)
    until(browser, "the deployment to complete", lambda d: "completed" in css(d, "#dep-state").text)
    assert browser.execute_script("return window.stayedOnPage") is True           # live, without reloading
    assert "2.0" in row.text or "KB" in row.text                                  # bytes delivered
    assert [h.text for h in browser.find_elements(By.CSS_SELECTOR, "#dep-history td:nth-child(3)")][-4:] == \
        ["queued", "delivering", "verifying", "active"]
    assert HOSTILE_MODEL in css(browser, ".titlebar").text
    no_script_ran(browser)
    shots(browser, "deployment")

    css(browser, "#rollback").click()                                # the device gets valve-fault back
    until(browser, "the confirmation", lambda d: d.switch_to.alert).accept()
    until(browser, "the rollback", lambda d: "rolled_back" in
          css(d, '#dep-devices tr[data-endpoint="%s"] .state' % BOARD).text, timeout=60)
    assert "rolled back: by token" in css(browser, "#dep-reason").text
    running = console.svc.server.device(BOARD).capabilities
    assert running["Model Name"] == "valve-fault"
    browser.get(console.base + "/console/deployments")
    shots(browser, "deployments")


def test_the_audit_log_shows_the_deployment(console, browser, shots):
    browser.get(console.base + "/console/audit")
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#audit tbody tr")]
    assert any("POST /api/deployments" in r and "201" in r and "selenium" in r for r in rows), rows
    assert any("POST /api/tags" in r for r in rows) and any("POST /api/session" in r for r in rows)
    shots(browser, "audit")
    browser.get(console.base + "/console/tokens")
    assert "selenium" in css(browser, "#tokens").text
    shots(browser, "tokens")


def test_an_admin_makes_a_viewer_token_and_a_viewer_sees_no_actions(console, browser, shots):
    browser.get(console.base + "/console/tokens")
    css(browser, "#token-name").send_keys("wall display")
    Select(css(browser, "#token-role")).select_by_value("viewer")
    css(browser, "#new-token button[type=submit]").click()
    until(browser, "the new token", lambda d: css(d, "#token-secret").text.startswith("tmla_"))
    viewer = css(browser, "#token-secret").text
    css(browser, "#signout").click()
    until(browser, "the sign-in page", lambda d: "/console/login" in d.current_url)
    css(browser, "#token").send_keys(viewer)
    css(browser, "#signin button").click()
    until(browser, "the fleet", lambda d: d.find_elements(By.ID, "fleet"))
    assert css(browser, "#role").text == "viewer" and not browser.find_elements(By.ID, "bulk")
    assert "Audit log" not in css(browser, "header").text
    browser.get(console.base + "/console/devices/" + BOARD)
    assert not browser.find_elements(By.CSS_SELECTOR, "#infer button[type=submit], .op-write, .op-execute, #refresh")
    assert browser.find_elements(By.CSS_SELECTOR, ".op-read")                  # reading is a viewer's right
    browser.get(console.base + "/console/deployments")
    assert not browser.find_elements(By.ID, "create")
