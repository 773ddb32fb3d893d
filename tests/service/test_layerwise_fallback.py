"""A device whose runtime predates the PATCH op (docs/blob-format.md §12) still gets a model whose registered
variant uses patch-based stages: the service compiles its layer-by-layer twin for it, as it compiles pruned
variants when nothing fits, and a device that runs PATCH keeps the smaller patched arena."""

import pytest

from tinymlaas.service.deployments import DeploymentError
from tinymlaas.paths import mlperf_model
from tinymlaas.service.core import Service
from tinymlaas.service.selection import choose


def caps_of(ops):
    return {"runtime": "tinyml-mpy", "abi": 1, "ops": ops, "heap_free": 400_000, "largest_block": 300_000,
            "fs_free": 2_000_000, "arch": "xtensawin"}


def test_a_runtime_without_patch_gets_a_layer_by_layer_twin(tmp_path):
    svc = Service(tmp_path / "svc")
    model, errors = svc.catalog.add(mlperf_model("sww"), "sww", "1", builds=[("tmlb-int8", "tinyml-mpy", {})])
    assert not errors
    (patched,) = svc.registry.variants(model)
    assert "PATCH" in patched["ops"]
    old_ops = sorted(set(patched["ops"]) - {"PATCH"})
    best, verdicts = choose(svc.registry.variants(model), caps_of(old_ops))
    assert best is None and verdicts[0].reasons == ["device runtime lacks op(s) PATCH"]

    best = svc.fitting_variant(model, caps_of(old_ops), "old-1")
    twin = best.variant
    assert twin["id"] != patched["id"] and twin["options"].get("patches") is False and "PATCH" not in twin["ops"]
    assert twin["ram_bytes"] > patched["ram_bytes"]           # the arena the stages saved
    # compiled once: the next old device finds it registered
    assert svc.layerwise_variants(model, choose(svc.registry.variants(model), caps_of(old_ops))[1]) == []
    assert len(svc.registry.variants(model)) == 2
    # a device that runs PATCH keeps the patched variant (less RAM)
    assert svc.fitting_variant(model, caps_of(patched["ops"]), "new-1").variant["id"] == patched["id"]
    # a device that lacks another op as well is refused with both reasons, nothing more compiled
    with pytest.raises(DeploymentError, match="lacks op"):
        svc.fitting_variant(model, caps_of([o for o in old_ops if o != old_ops[0]]), "odd-1")
