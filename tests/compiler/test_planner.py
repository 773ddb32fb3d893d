"""Memory planner: valid plans and arena sizes against TFLite Micro for the five MLPerf Tiny models."""

import pytest
from conftest import TFLM_HEAD_ARENA

from tinymlaas.compiler import compile_tflite
from tinymlaas.compiler.frontend import parse_tflite
from tinymlaas.compiler.ir import Graph, Op, Tensor
from tinymlaas.compiler.planner import Buffer, Plan, lower_bound, plan_memory, validate_plan


def assert_no_clobber(g, plan):
    """Independently of the planner's buffers: every tensor an op reads still holds what its producer wrote (no op
    in between writes bytes that overlap it), and only in-place-capable ops share bytes with an operand."""
    span = {t: (plan.offsets[t], plan.offsets[t] + g.tensors[t].nbytes) for t in plan.offsets}

    def overlap(a, b):
        return span[a][0] < span[b][1] and span[b][0] < span[a][1]

    writer_of = {t: -1 for t in g.inputs}
    for k, op in enumerate(g.ops):
        for t in op.inputs:
            if t not in span:
                continue
            assert t in writer_of, "tensor %d read before it is written" % t
            for later in g.ops[writer_of[t] + 1:k]:
                if later.kind != "VIEW":
                    assert not overlap(later.outputs[0], t), "op %d clobbers tensor %d before op %d reads it" % (
                        g.ops.index(later), t, k)
        if op.kind not in ("VIEW", "LUT", "ADD", "MUL"):
            for t in op.inputs:
                if t in span:
                    assert not overlap(t, op.outputs[0]), "op %d (%s) overlaps an operand" % (k, op.kind)
        for t in op.outputs:
            writer_of[t] = k
    for t in g.outputs:
        for later in g.ops[writer_of[t] + 1:]:
            if later.kind != "VIEW":
                assert not overlap(later.outputs[0], t) or later.outputs[0] == t, "output %d clobbered" % t


def _planned(path):
    from tinymlaas.compiler import run_passes

    g = parse_tflite(path.read_bytes())
    run_passes(g)
    return g, plan_memory(g)


@pytest.mark.parametrize("key", sorted(TFLM_HEAD_ARENA))
def test_mlperf_plan_is_valid_and_beats_or_matches_tflm(mlperf, key):
    g, plan = _planned(mlperf(key))
    validate_plan(plan)
    assert_no_clobber(g, plan)
    assert plan.arena_bytes <= TFLM_HEAD_ARENA[key]
    assert plan.arena_bytes == plan.lower_bound  # no waste at all on these models
    assert compile_tflite(mlperf(key), patches=False).arena_bytes == plan.arena_bytes


def test_vww_reaches_layerwise_ideal(mlperf):
    assert compile_tflite(mlperf("vww"), patches=False).arena_bytes == 55296  # TFLM: 73,728


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


def _random_graph(r):
    """A random op list (in execution order) over int8 vectors: LUT/ADD (in-place capable), CONV_2D (not), VIEW."""
    sizes = [int(r.integers(1, 9)) * 16 for _ in range(3)]
    tensors = [Tensor("in%d" % i, "int8", (s,), (0.1,), (0,)) for i, s in enumerate(sizes[:int(r.integers(1, 3))])]
    ops = []
    for k in range(int(r.integers(2, 14))):
        kind = ["LUT", "ADD", "CONV_2D", "VIEW", "CONV_2D"][int(r.integers(0, 5))]
        a = int(r.integers(0, len(tensors)))
        ins = [a]
        if kind == "ADD":
            same = [i for i, t in enumerate(tensors) if t.shape == tensors[a].shape]
            ins.append(same[int(r.integers(0, len(same)))])
        shape = tensors[a].shape if kind != "CONV_2D" else (int(r.integers(1, 9)) * 16,)
        tensors.append(Tensor("t%d" % k, "int8", shape, (0.1,), (0,)))
        ops.append(Op(kind, ins, [len(tensors) - 1], index=k))
    n_in = sum(1 for t in tensors if t.name.startswith("in"))
    used = {i for op in ops for i in op.inputs}
    outputs = [i for i in range(n_in, len(tensors)) if i not in used]
    return Graph(tensors, ops, list(range(n_in)), outputs)


def test_random_graphs_plan_validly(request):
    import numpy as np

    r = np.random.default_rng(7)
    for _ in range(2000 if request.config.getoption("--fuzz-long") else 200):
        g = _random_graph(r)
        for inplace in (True, False):
            plan = plan_memory(g, inplace=inplace)
            validate_plan(plan)
            assert_no_clobber(g, plan)
            assert plan.arena_bytes >= plan.lower_bound


def test_inplace_add_mul_with_broadcast_constant_is_exact(rng):
    """conv -> ADD(conv, const [1,1,4,1]) -> MUL(const, sum) -> LOGISTIC: ADD and MUL run in place over their
    dying operand while the constant broadcasts; outputs equal TFLite Micro's."""
    import numpy as np
    from tflite_builder import ModelBuilder, run_tflm

    from tinymlaas.blob import reference
    from tinymlaas.compiler.tflite_schema import schema as S

    BO = S.BuiltinOperator
    mb = ModelBuilder()
    x = mb.tensor([1, 4, 4, 3], "int8", 0.1, 0)
    w = mb.tensor([3, 1, 1, 3], "int8", [0.02] * 3, [0] * 3,
                  data=np.arange(9).reshape(3, 1, 1, 3).astype(np.int8) - 4)
    c = mb.tensor([1, 4, 4, 3], "int8", 0.05, 2)
    k = mb.tensor([1, 1, 4, 1], "int8", 0.07, -3, data=np.array([10, -20, 30, 5], np.int8).reshape(1, 1, 4, 1))
    a = mb.tensor([1, 4, 4, 3], "int8", 0.08, 1)
    m2 = mb.tensor([1, 4, 4, 3], "int8", 0.09, -2)
    y = mb.tensor([1, 4, 4, 3], "int8", 1 / 256, -128)
    co = S.Conv2DOptionsT()
    co.padding, co.strideH, co.strideW, co.dilationHFactor, co.dilationWFactor = S.Padding.VALID, 1, 1, 1, 1
    mb.op(BO.CONV_2D, [x, w, -1], [c], S.BuiltinOptions.Conv2DOptions, co)
    mb.op(BO.ADD, [c, k], [a], S.BuiltinOptions.AddOptions, S.AddOptionsT())
    mb.op(BO.MUL, [k, a], [m2], S.BuiltinOptions.MulOptions, S.MulOptionsT())
    mb.op(BO.LOGISTIC, [m2], [y])
    mb.inputs, mb.outputs = [x], [y]
    m = mb.build()
    cm = compile_tflite(m)
    assert cm.ops == ["CONV_2D", "ADD", "MUL", "LUT"] and cm.passes["inplace_ops"] == 2
    r = cm.report(detail=True)
    assert r["layers"][0]["output_offset"] == r["layers"][1]["output_offset"] == r["layers"][2]["output_offset"]
    for _ in range(4):
        xs = rng.integers(-128, 128, size=(1, 4, 4, 3), dtype=np.int8)
        assert np.array_equal(np.asarray(reference.run(cm.blob, [xs])[0]).reshape(1, 4, 4, 3), run_tflm(m, xs)[0])
