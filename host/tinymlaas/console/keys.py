"""The console's keys page: the package-signing keys of the service's key store (ids only: public, never a private
key), the anchor updates its rotations made, and per device what it reports trusting (TinyML /32770/0/26, the
installed manifest sequence 25, the anchor sequence 30) and what it still needs."""

from ..signing import anchors


def device_trust_rows(svc):
    """One row per registered TinyML device: trusted key ids, installed and anchor sequence numbers, and its key
    state: trusts the signing key, updates pending, no chain reaches it (provision again), or no report."""
    current = svc.keys.current_kid()
    rows = []
    for reg in sorted(svc.server.devices(), key=lambda r: r.endpoint):
        caps = reg.capabilities
        if caps is None:
            continue
        kids = [k for k in str(caps.get("Trust Anchors") or "").split(",") if k]
        row = {"endpoint": reg.endpoint, "kids": kids, "installed_sequence": caps.get("Installed Sequence"),
               "anchor_sequence": caps.get("Anchor Sequence")}
        if caps.get("Class ID") in (None, ""):
            row["state"], row["badge"] = "reports no signed-package state", "idle"
        elif current in kids:
            row["state"], row["badge"] = "trusts the signing key", "ok"
        else:
            pending = svc.anchor_push.pending(reg.endpoint)
            if pending:
                row["state"], row["badge"] = "%d anchor update(s) to send" % len(pending), "busy"
            else:
                row["state"], row["badge"] = "no update reaches it: provision again", "bad"
        rows.append(row)
    return rows


def keys_context(svc):
    store = svc.keys
    return {"keys": anchors.key_rows(store), "updates": [
        {"sequence": seq, "signer": kid.hex(), "adds": u.anchor_kid.hex(),
         "revokes": u.revoke.hex() if u.revoke else None, "bytes": len(env)}
        for seq, env in anchors.updates(store) for kid, u in [anchors.describe(env)]],
        "devices": device_trust_rows(svc), "directory": str(store.directory)}
