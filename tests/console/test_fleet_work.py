"""The console's database work against the size of the fleet and its history: a device's page reads that
device's rows only, and the fleet page does not read every registration event ever written (one per Update).

Work is counted by SQLite itself on the service's connection: statements (trace callback) and virtual-machine
instructions (progress handler, in steps of 100) while a real `Service` answers real HTTP requests; the fleets
are registrations stored as a server stores them (Store.save_device), loaded when the service starts.
"""

import asyncio
import time

import aiohttp
import pytest

from tinymlaas.db import Database
from tinymlaas.lwm2m.registration import Registration
from tinymlaas.lwm2m.store import Store
from tinymlaas.service.core import Service
from tinymlaas.web import build_api

pytestmark = pytest.mark.xdist_group("e2e")

CAPS = {"Model Name": "kws", "Model Version": "1", "Model SHA256": "ab" * 32, "Free Heap": 100000,
        "Heap Total": 200000, "Largest Free Block": 50000, "Flash Free": 1 << 20, "Runtime Name": "micropython"}


def fill(data_dir, devices, updates=0):
    """`devices` registrations dev-0000 ...; dev-0001 then writes `updates` Updates; dev-0002 de-registers; and
    node-generic, a generic LwM2M device (no TinyML object, so no capabilities)."""
    db = Database(str(data_dir / "tinymlaas.db"))
    store = Store(db)
    now = time.time()
    for i in range(devices):
        reg = Registration(endpoint="dev-%04d" % i, id="r%d" % i, address="127.0.0.1:%d" % (20000 + i),
                           lifetime=86400, lwm2m_version="1.1", binding="U", objects=["/1/0", "/3/0", "/32770/0"],
                           registered_at=now, updated_at=now, capabilities=CAPS)
        store.save_device(reg, "registered")
        db.execute("INSERT INTO device_tags (endpoint, tag) VALUES (?, ?)", (reg.endpoint, "line-%d" % (i % 3)))
        db.execute("INSERT INTO device_info (endpoint, info, at) VALUES (?, ?, ?)",
                   (reg.endpoint, '{"Model Number": "ESP32"}', now))
        if i == 1:
            with db.transaction() as tx:
                for _ in range(updates):
                    tx.execute("INSERT INTO device_events (endpoint, event, at, address) VALUES (?, ?, ?, ?)",
                               (reg.endpoint, "updated", now, reg.address))
    store.delete_device("dev-0002", "deregistered")
    store.save_device(Registration(endpoint="node-generic", id="g", address="127.0.0.1:19999", lifetime=86400,
                                   lwm2m_version="1.0", binding="U", objects=["/1/0", "/3/0"], registered_at=now,
                                   updated_at=now), "registered")
    db.close()


def work(data_dir, paths):
    """{path: (SQL statements, SQLite VM instructions / 100, the page)} of one GET of each path, after one to
    warm up."""
    async def main():
        svc = await Service(data_dir).start("127.0.0.1", 0)
        api = build_api(svc.server, svc, auth=False)
        await api.start("127.0.0.1", 0)
        counts = {"statements": 0, "steps": 0}

        def step():
            counts["steps"] += 1
            return 0

        def statement(sql):
            counts["statements"] += 1

        out = {}
        try:
            async with aiohttp.ClientSession() as http:
                for path in paths:
                    url = "http://127.0.0.1:%d%s" % (api.port, path)
                    async with http.get(url) as r:
                        assert r.status == 200, (path, r.status, await r.text())
                    svc.db.conn.set_progress_handler(step, 100)
                    svc.db.conn.set_trace_callback(statement)
                    counts.update(statements=0, steps=0)
                    async with http.get(url) as r:
                        assert r.status == 200
                        text = await r.text()
                    svc.db.conn.set_progress_handler(None, 100)
                    svc.db.conn.set_trace_callback(None)
                    out[path] = (counts["statements"], counts["steps"], text)
        finally:
            await api.stop()
            await svc.stop()
        return out

    return asyncio.run(main())


def test_a_device_page_reads_that_devices_rows_whatever_the_fleet(tmp_path):
    # registered; de-registered; generic
    pages = ["/console/devices/dev-0003", "/console/devices/dev-0002", "/console/devices/node-generic"]
    for n in (10, 400):
        fill(tmp_path / str(n), n)
    small, large = work(tmp_path / "10", pages), work(tmp_path / "400", pages)
    for page in pages:
        assert large[page][0] == small[page][0], (page, small, large)       # the same statements...
        assert large[page][1] <= small[page][1] * 1.2 + 20, (page, small, large)   # ...reading as many rows
        # (before: the page built every device's fleet row, 400 devices' tags, Device objects and events)


def test_the_fleet_page_does_not_read_every_event_of_the_fleets_history(tmp_path):
    fill(tmp_path / "new", 50)
    fill(tmp_path / "old", 50, updates=20000)      # one device's 20,000 Updates: ~14 days at a 60 s lifetime
    fresh, aged = work(tmp_path / "new", ["/"])["/"], work(tmp_path / "old", ["/"])["/"]
    assert aged[0] == fresh[0], (fresh, aged)
    assert aged[1] <= fresh[1] * 1.2 + 20, (fresh, aged)   # before: the GROUP BY stepped through all 20,000
    for page in (fresh[2], aged[2]):
        assert page.count('<tr data-endpoint="') == 51 and 'data-endpoint="node-generic"' in page
        assert 'data-endpoint="dev-0002" data-state="offline"' in page


def test_a_fleet_beyond_one_page_is_paged_and_filtered_by_the_server(tmp_path):
    fill(tmp_path, 450)                             # 449 registered + node-generic + dev-0002 offline = 451 rows
    pages = ["/", "/?page=3", "/?q=DEV-0418", "/?tag=line-1&page=2", "/?state=offline", "/?page=x"]
    with pytest.raises(AssertionError, match="400"):
        work(tmp_path, pages)                       # ?page=x: 400
    got = work(tmp_path, pages[:-1])

    def rows(page):
        return got[page][2].count('<tr data-endpoint="')

    assert rows("/") == 200 and "1–200 of 451" in got["/"][2] and 'id="page-next"' in got["/"][2]
    assert rows("/?page=3") == 51 and "401–451 of 451" in got["/?page=3"][2]
    assert rows("/?q=DEV-0418") == 1 and 'data-endpoint="dev-0418"' in got["/?q=DEV-0418"][2]
    assert rows("/?tag=line-1&page=2") == 150 and "1–150 of 150" in got["/?tag=line-1&page=2"][2]  # the last page
    assert rows("/?state=offline") == 1 and 'data-endpoint="dev-0002"' in got["/?state=offline"][2]
    assert 'data-paged="1"' in got["/"][2]


def test_in_the_browser_a_paged_fleets_filters_reload_the_page(tmp_path):
    import shutil
    import threading

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as Driver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    fill(tmp_path, 450)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    svc = run(Service(tmp_path).start("127.0.0.1", 0))
    api = build_api(svc.server, svc, auth=False)
    run(api.start("127.0.0.1", 0))
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Driver(shutil.which("chromedriver") or "/usr/bin/chromedriver"))

    def shown(url_part):
        WebDriverWait(driver, 30, 0.1).until(lambda d: url_part in d.current_url and
                                             d.execute_script("return document.readyState") == "complete")
        return len(driver.find_elements(By.CSS_SELECTOR, "#fleet tbody tr[data-endpoint]:not(.hidden)"))

    try:
        driver.get("http://127.0.0.1:%d/" % api.port)
        assert shown("/") == 200
        driver.find_element(By.ID, "page-next").click()
        assert shown("page=2") == 200
        Select(driver.find_element(By.ID, "tag-filter")).select_by_value("line-1")    # the server filters
        assert shown("tag=line-1") == 150 and "page=" not in driver.current_url
        search = driver.find_element(By.ID, "fleet-search")
        search.send_keys("dev-041")                  # as one types: the rows shown (dev-0412, -0415, -0418)
        assert shown("tag=line-1") == 3
        search.send_keys(Keys.ENTER)                 # Enter: the whole fleet
        assert shown("q=dev-041") == 3
        driver.find_element(By.CSS_SELECTOR, '#state-filter button[data-state=""]').click()
        assert shown("state=&") == 3
    finally:
        driver.quit()
        run(api.stop())
        run(svc.stop())
        loop.call_soon_threadsafe(loop.stop)
