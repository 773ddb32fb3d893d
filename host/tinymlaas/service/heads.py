"""Trainable heads (on-device learning, docs/learning.md "On the service"): a deployment made with a head
(`tinymlaas deploy --trainable-head softmax|ncm`) installs a variant compiled with embedding_output — its blob's
graph output 1 is the input of the model's last FULLY_CONNECTED op — and its package metadata carries
{"kind", "lr", "save_every", "output"} for the device's head. The deployment keeps its head config in
deployment_heads; a rollback to such a variant gets the config it was installed with.

Variants with the embedding output serve head deployments only, and the others only deployments without a head:
an extra output costs arena bytes and a device without a head has no use for it.
"""

import json

from ..db import migration
from ..errors import UserError
from ..package import PackageError, head_config

migration("learning", 1, """CREATE TABLE deployment_heads (
    deployment_id INTEGER PRIMARY KEY,
    head TEXT NOT NULL)""")


def is_embedding_variant(variant):
    return bool((variant.get("options") or {}).get("embedding_output"))


def check_head(head):
    """The head a deployment asks for ({"kind", "lr", "save_every"}), checked: UserError saying what is wrong."""
    if head is None:
        return None
    if not isinstance(head, dict) or "output" in head:
        raise UserError("'head' must be {\"kind\": \"softmax\"|\"ncm\", \"lr\": number, \"save_every\": N}")
    try:
        checked = head_config(head)
    except PackageError as e:
        raise UserError(str(e)) from None
    checked.pop("output")          # the variant's blob says which output the embedding is
    return checked


def package_head(head, variant):
    """The package metadata "head" for installing `variant` with deployment head config `head`."""
    emb = (variant.get("report") or {}).get("embedding") or {}
    return dict(head, output=int(emb.get("output", 1)))


def embedding_twins(model_variants):
    """Option sets (backend, runtime, options) for the embedding-output twins of a model's int8 variants that
    are not compiled yet: what the service compiles when a head deployment finds none."""
    have = {(v["runtime"], json.dumps(v.get("options") or {}, sort_keys=True)) for v in model_variants}
    wanted = []
    for v in model_variants:
        if v.get("backend") != "tmlb-int8" or is_embedding_variant(v):
            continue
        options = dict(v.get("options") or {}, embedding_output=True)
        key = (v["runtime"], json.dumps(options, sort_keys=True))
        if key not in have:
            have.add(key)
            wanted.append(("tmlb-int8", v["runtime"], options))
    return wanted


class DeploymentHeads:
    def __init__(self, db):
        self.db = db

    def set(self, dep_id, head):
        if head is not None:
            self.db.execute("INSERT INTO deployment_heads (deployment_id, head) VALUES (?, ?)",
                            (int(dep_id), json.dumps(head, sort_keys=True)))

    def get(self, dep_id):
        row = self.db.query_one("SELECT head FROM deployment_heads WHERE deployment_id=?", (int(dep_id),))
        return json.loads(row["head"]) if row else None

    def for_variant(self, variant_id, endpoint=None):
        """The head config the latest deployment of `variant_id` (to `endpoint`, when given) installed it with."""
        sql = ("SELECT h.head FROM deployment_heads h JOIN deployment_devices d ON d.deployment_id = h.deployment_id "
               "WHERE d.variant_id=?" + (" AND d.endpoint=?" if endpoint else "") + " ORDER BY h.deployment_id DESC")
        row = self.db.query_one(sql + " LIMIT 1", (variant_id, endpoint) if endpoint else (variant_id,))
        return json.loads(row["head"]) if row else None
