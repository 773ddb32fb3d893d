"""Waiting helpers shared by the end-to-end tests (asyncio, polling with a deadline)."""

import asyncio


async def wait_for(pred, timeout=60, what="condition"):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("timed out waiting for " + what)
        await asyncio.sleep(0.1)


async def wait_for_value(server, endpoint, path, pred, timeout=60):
    """Read an LwM2M resource until pred(value) holds; the value."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        v = await server.read_value(endpoint, path)
        if pred(v):
            return v
        if loop.time() > end:
            raise AssertionError("%s stayed %r" % (path, v))
        await asyncio.sleep(0.2)


async def observed_inference(svc, endpoint, x, timeout=60):
    """Observe /32770/0/22, write input x to /32770/0/21, wait for the result notification -> (the device's output
    bytes, the host reference's output bytes for the blob the device reports installed)."""
    import numpy as np

    from tinymlaas.blob import reference
    from tinymlaas.blob.reader import parse

    server = svc.server
    notes = asyncio.Queue()
    obs = await server.observe(endpoint, "/32770/0/22", lambda value, o=None: notes.put_nowait(value))
    try:
        await asyncio.wait_for(notes.get(), 10)  # the current value (RFC 7641)
        blob = svc.registry.store.get((await svc.engine.channel.installed(endpoint))["sha256"])
        await server.write(endpoint, "/32770/0/21", x.tobytes())
        result = await asyncio.wait_for(notes.get(), timeout)
    finally:
        obs.cancel()
    expected = np.asarray(reference.Executor(parse(blob)).run([x])[0]).astype(np.int8).tobytes()
    return bytes(result[(32770, 0, 22)]), expected


def wine_tree(folder, name="wine"):
    """A small scikit-learn decision tree on the wine data set pickled as folder/<name>.pkl -> (x, y)."""
    import pickle

    from sklearn.datasets import load_wine
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_wine(return_X_y=True)
    (folder / (name + ".pkl")).write_bytes(pickle.dumps(DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y)))
    return x, y


def rotated_keys(tmp_path, monkeypatch):
    """A key store of this test (not the session's shared one) rotated from K1 to K2 with K1 revoked ->
    (K1's anchors as a device provisioned before the rotation holds them, K2)."""
    from tinymlaas.signing import anchors
    from tinymlaas.signing.store import KeyStore

    monkeypatch.setenv("TINYMLAAS_KEYS", str(tmp_path / "keys"))
    store = KeyStore(tmp_path / "keys")
    k1 = store.signer()
    k2, _, _ = anchors.rotate(store, revoke_old=True)
    return {k1.key_id.hex(): k1.public_point.hex()}, k2
