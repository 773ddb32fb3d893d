"""Memory planner: valid plans and arena sizes against TFLite Micro for the five MLPerf Tiny models."""

import pytest
from conftest import TFLM_HEAD_ARENA

from tinymlaas.compiler import compile_tflite
from tinymlaas.compiler.frontend import parse_tflite
from tinymlaas.compiler.ir import Graph, Op, Tensor
from tinymlaas.compiler.planner import Buffer, Plan, lower_bound, plan_memory, validate_plan


def _planned(path):
    import tinymlaas.compiler as C

    g = parse_tflite(path.read_bytes())
    # Run the same passes compile_tflite runs, then plan.
    C.fold_constants(g)
    C.make_views(g)
    C.lower_to_lut(g)
    C.fuse_pads(g)
    C.fuse_activations(g)
    C.lower(g)
    return g, plan_memory(g)


@pytest.mark.parametrize("key", sorted(TFLM_HEAD_ARENA))
def test_mlperf_plan_is_valid_and_beats_or_matches_tflm(mlperf, key):
    g, plan = _planned(mlperf(key))
    validate_plan(plan)
    # Independently of the planner's buffers: every tensor an op reads still holds what its producer wrote (no op
    # in between writes over it).
    span = {t: (plan.offsets[t], plan.offsets[t] + g.tensors[t].nbytes) for t in plan.offsets}
    writer_of = {}
    for k, op in enumerate(g.ops):
        for t in op.inputs:
            if t in span and t in writer_of:
                lo, hi = span[t]
                for later in g.ops[writer_of[t] + 1:k]:
                    if later.kind == "VIEW":
                        continue
                    o_lo, o_hi = span[later.outputs[0]]
                    assert o_hi <= lo or hi <= o_lo, "op %d clobbers tensor %d before op %d reads it" % (
                        g.ops.index(later), t, k)
        for t in op.outputs:
            writer_of[t] = k
    assert plan.arena_bytes <= TFLM_HEAD_ARENA[key]
    assert plan.arena_bytes == plan.lower_bound  # no waste at all on these models
    assert compile_tflite(mlperf(key)).arena_bytes == plan.arena_bytes


def test_vww_reaches_layerwise_ideal(mlperf):
    assert compile_tflite(mlperf("vww")).arena_bytes == 55296  # TFLM: 73,728


def test_validate_plan_catches_overlap():
    a = Buffer(0, 64, 0, 2, [0], offset=0)
    b = Buffer(1, 64, 2, 3, [1], offset=32)
    with pytest.raises(AssertionError, match="overlap"):
        validate_plan(Plan({0: 0, 1: 32}, 128, 128, [a, b], "test", 0))
    b.offset = 64
    validate_plan(Plan({0: 0, 1: 64}, 128, 128, [a, b], "test", 0))
    with pytest.raises(AssertionError, match="outside"):
        validate_plan(Plan({0: 0, 1: 64}, 100, 128, [a, b], "test", 0))


def test_lower_bound_is_peak_of_live_sizes():
    bs = [Buffer(0, 100, 0, 1, [0]), Buffer(1, 50, 1, 2, [1]), Buffer(2, 70, 2, 3, [2])]
    assert lower_bound(bs) == 150


def _chain(n_ops, sizes, kind="LUT"):
    """x -> op -> t1 -> op -> ... with the given tensor sizes (int8 vectors)."""
    tensors = [Tensor("t%d" % i, "int8", (s,), (0.1,), (0,)) for i, s in enumerate(sizes)]
    ops = [Op(kind, [i], [i + 1], index=i) for i in range(n_ops)]
    return Graph(tensors, ops, [0], [n_ops])


def test_lut_chain_runs_in_place_but_not_over_graph_io():
    g = _chain(3, [32, 32, 32, 32])
    plan = plan_memory(g)
    # t1 and t2 share one buffer (op 2 and 3 run in place); the graph's input and output keep their own.
    assert plan.offsets[1] == plan.offsets[2]
    assert plan.offsets[0] != plan.offsets[1] and plan.offsets[3] != plan.offsets[2]
    assert plan.inplace == 1
    # The output may reuse the input's bytes once the input is dead (the caller reads outputs after the run).
    assert plan.arena_bytes == 64
    assert plan_memory(g, inplace=False).arena_bytes == 64  # ping-pong reaches the same without in-place


def test_non_inplace_op_never_shares_with_its_operand():
    g = _chain(3, [32, 32, 32, 32], kind="CONV_2D")
    plan = plan_memory(g)
    for op in g.ops:
        assert plan.offsets[op.inputs[0]] != plan.offsets[op.outputs[0]]
