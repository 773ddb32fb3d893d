"""The console's keys page (console/keys.py): the key store's key ids and anchor updates, and per device the keys
it reports trusting, its sequence numbers and whether the service still has updates to send it — from a real
Service answering real HTTP, its registrations stored as a server stores them."""

import asyncio
import re
import time

import aiohttp
import pytest

from tinymlaas.db import Database
from tinymlaas.lwm2m.registration import Registration
from tinymlaas.lwm2m.store import Store
from tinymlaas.service.core import Service
from tinymlaas.signing import anchors
from tinymlaas.signing.store import KeyStore
from tinymlaas.web import build_api

pytestmark = pytest.mark.xdist_group("e2e")


def test_keys_page_shows_keys_updates_and_what_each_device_trusts(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYMLAAS_KEYS", str(tmp_path / "keys"))
    store = KeyStore(tmp_path / "keys")
    k1 = store.signer()
    k2, _, _ = anchors.rotate(store, revoke_old=True)
    db = Database(str(tmp_path / "tinymlaas.db"))
    now = time.time()
    trusts = {"dev-new": (k2.key_id.hex(), 0), "dev-old": (k1.key_id.hex(), 0), "dev-lost": ("00" * 8, 0),
              "dev-plain": None}
    for name, t in trusts.items():
        caps = {"Model Name": "m", "Installed Sequence": 7}
        if t is not None:
            caps.update({"Trust Anchors": t[0], "Anchor Sequence": t[1], "Class ID": "3d" * 16, "Vendor ID": "4f" * 16})
        Store(db).save_device(Registration(endpoint=name, id=name, address="127.0.0.1:9", lifetime=86400,
                                           lwm2m_version="1.1", binding="U", objects=["/3/0", "/32770/0"],
                                           registered_at=now, updated_at=now, capabilities=caps), "registered")
    db.close()

    async def main():
        svc = await Service(tmp_path).start("127.0.0.1", 0)
        api = build_api(svc.server, svc, auth=False)
        await api.start("127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get("http://127.0.0.1:%d/console/keys" % api.port) as r:
                    assert r.status == 200, await r.text()
                    return await r.text()
        finally:
            await api.stop()
            await svc.stop()

    page = asyncio.run(main())
    assert "PRIVATE" not in page and "BEGIN" not in page
    rows = {m.group(1): m.group(2) for m in re.finditer(r'<tr data-endpoint="([^"]+)">(.*?)</tr>', page, re.S)}
    assert set(rows) == set(trusts)
    assert "trusts the signing key" in rows["dev-new"]
    assert "1 anchor update(s) to send" in rows["dev-old"] and k1.key_id.hex() in rows["dev-old"]
    assert "provision again" in rows["dev-lost"]
    assert "no signed-package state" in rows["dev-plain"]
    keys_table = page[page.index('id="keys"'):page.index('id="anchor-updates"')]
    assert re.search(k2.key_id.hex() + r'.*?signs', keys_table, re.S)
    assert re.search(k1.key_id.hex() + r'.*?revoked', keys_table, re.S)
    assert "update #1" in keys_table
