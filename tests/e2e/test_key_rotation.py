"""A key rotation followed by a deployment, with real processes: an emulated MicroPython device provisioned with
key K1 only registers with a service whose key store has rotated to K2 (revoking K1); the service sends it the
anchor update (/32770/0/29, signed by K1), the device then trusts K2 alone, keeps that across a restart, and
installs a package signed with K2."""

import asyncio

import pytest

from tinymlaas.devices.emulated import EmulatedDevice
from tinymlaas.service.core import Service

from e2e_helpers import rotated_keys, wait_for, wait_for_value, wine_tree

pytestmark = pytest.mark.xdist_group("e2e")


def test_rotation_reaches_a_device_then_a_deployment_signed_by_the_new_key(tmp_path, monkeypatch):
    provisioned, k2 = rotated_keys(tmp_path, monkeypatch)
    wine_tree(tmp_path)

    async def main():
        svc = await Service(tmp_path / "svc").start("127.0.0.1", 0)
        uri = "coap://127.0.0.1:%d" % svc.server.port
        dev = EmulatedDevice(uri, "rot-1", data_dir=tmp_path / "dev", trust=provisioned)
        dev.start()
        try:
            await wait_for(lambda: svc.anchor_push.sent.get("rot-1"), 60, "the anchor update taken")
            assert await wait_for_value(svc.server, "rot-1", "/32770/0/26", lambda v: v == k2.key_id.hex()) \
                == k2.key_id.hex()                                            # K1 revoked, K2 trusted
            assert await svc.server.read_value("rot-1", "/32770/0/30") == 1
            # a restart keeps what it took (DATA_DIR/trust-anchors.json), and it needs nothing more
            before = svc.server.find("rot-1").id
            dev.stop()
            dev.start()
            await wait_for(lambda: (r := svc.server.find("rot-1")) and r.id != before and r.capabilities, 60,
                           "registration after restart")
            assert await svc.server.read_value("rot-1", "/32770/0/26") == k2.key_id.hex()
            assert svc.anchor_push.pending("rot-1") == [] and svc.anchor_push.sent["rot-1"] == 1
            svc.catalog.add(tmp_path / "wine.pkl", "wine")
            dep = svc.create_deployment("wine", ["rot-1"])
            svc.start_deployment(dep)
            await wait_for(lambda: svc.deployments.get(dep)["state"] != "running", 120, "deployment")
            assert svc.deployments.get(dep)["devices"][0]["state"] == "active", svc.deployments.get(dep)
            assert await svc.server.read_value("rot-1", "/32770/0/25") >= 1   # a signed manifest installed
        except BaseException:
            print("\n".join(dev.lines[-30:]))
            raise
        finally:
            dev.stop()
            await svc.stop()

    asyncio.run(main())
