#!/usr/bin/env python3
"""Times the peers (ONNX Runtime, PyTorch, numpy, scipy, scikit-learn) on the workloads of
netcompress's criterion benchmarks, single-threaded, and prints one JSON object per
measurement: {"id": criterion id, "peer": name, "ms": median milliseconds, "runs": n,
"note": ...}.

Sizes and distributions follow benches/ (seeded; numpy's generator, so the values differ
from the Rust benches' but follow the same distribution). Each workload is warmed up, then
timed `--repeat` times (at least 3, more for fast ones up to about a second of work), and
the median is reported.

Usage: python peers.py [--only SUBSTRING ...] [--repeat N] [--slow] [--model-dir DIR]
"""

import os

# One thread everywhere, before numpy / torch / onnxruntime are imported.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import warnings  # noqa: E402

import numpy as np  # noqa: E402

warnings.filterwarnings("ignore")

N16M = 16_777_216


def timeit(fn, repeat, min_total=1.0, max_runs=50):
    """Median wall time of `fn()` in ms after one warm-up call."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeat or (
        time.perf_counter() - start < min_total and len(times) < max_runs
    ):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3, len(times)


def emit(cid, peer, ms_runs, note=""):
    ms, runs = ms_runs
    print(json.dumps({"id": cid, "peer": peer, "ms": round(ms, 4), "runs": runs, "note": note}),
          flush=True)


def random_matrix(rows, cols, seed):
    """benches' random_matrix: sum of four uniforms minus two (f32)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((rows, cols), dtype=np.float32)
    for _ in range(4):
        out += rng.random((rows, cols), dtype=np.float32)
    return out - np.float32(2.0)


def random_weights(n, seed):
    """benches' random_weights: random_matrix values times 0.087."""
    return (random_matrix(1, n, seed).reshape(n) * np.float32(0.087)).astype(np.float32)


def ort_session(model_bytes_or_path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes_or_path, so, providers=["CPUExecutionProvider"])


def onnx_model(nodes, inputs, outputs, initializers=(), opset=21):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model.SerializeToString()


def tensor_info(name, elem, shape):
    from onnx import helper

    return helper.make_tensor_value_info(name, elem, shape)


def qdq_session(op, src, dst, shape, scale, zero_point, axis=None):
    """An ORT session of one QuantizeLinear / DequantizeLinear node (x -> y)."""
    from onnx import helper, numpy_helper

    attrs = {} if axis is None else {"axis": axis}
    return ort_session(onnx_model(
        [helper.make_node(op, ["x", "s", "z"], ["y"], **attrs)],
        [tensor_info("x", src, shape)],
        [tensor_info("y", dst, shape)],
        [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zero_point, "z")],
    ))


# ---------------------------------------------------------------------------------------
# Workloads. Each takes `args` and emits measurements.
# ---------------------------------------------------------------------------------------


def quantize(args):
    import torch
    from onnx import TensorProto

    x = random_weights(N16M, 1)
    scale = np.float32(0.35 / 127.0)
    cid = "quant/quantize_int8_per_tensor/16777216"
    sess = qdq_session("QuantizeLinear", TensorProto.FLOAT, TensorProto.INT8, [N16M],
                       np.array(scale, np.float32), np.array(0, np.int8))
    emit(cid, "onnxruntime QuantizeLinear", timeit(lambda: sess.run(None, {"x": x}), args.repeat))
    xt = torch.from_numpy(x)
    emit(cid, "torch.quantize_per_tensor",
         timeit(lambda: torch.quantize_per_tensor(xt, float(scale), 0, torch.qint8), args.repeat))
    q = np.empty(N16M, np.int8)
    tmp = np.empty(N16M, np.float32)

    def np_quant():
        np.multiply(x, 1.0 / scale, out=tmp)
        np.rint(tmp, out=tmp)
        np.clip(tmp, -128, 127, out=tmp)
        q[:] = tmp

    emit(cid, "numpy", timeit(np_quant, args.repeat))

    cid = "quant/dequantize_int8_per_tensor/16777216"
    qx = sess.run(None, {"x": x})[0]
    dsess = qdq_session("DequantizeLinear", TensorProto.INT8, TensorProto.FLOAT, [N16M],
                        np.array(scale, np.float32), np.array(0, np.int8))
    emit(cid, "onnxruntime DequantizeLinear",
         timeit(lambda: dsess.run(None, {"x": qx}), args.repeat))
    tq = torch.quantize_per_tensor(xt, float(scale), 0, torch.qint8)
    emit(cid, "torch.dequantize", timeit(lambda: tq.dequantize(), args.repeat))

    cid = "quant/quantize_int8_per_channel/4096x4096"
    w = x.reshape(4096, 4096)
    scales = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
    csess = qdq_session("QuantizeLinear", TensorProto.FLOAT, TensorProto.INT8, [4096, 4096],
                        scales, np.zeros(4096, np.int8), axis=0)
    emit(cid, "onnxruntime QuantizeLinear(axis=0), scales given",
         timeit(lambda: csess.run(None, {"x": w}), args.repeat),
         "lower bound: our kernel also computes the absmax scales")
    wt = torch.from_numpy(w)

    def torch_channel():
        s = wt.abs().amax(dim=1) / 127.0
        return torch.quantize_per_channel(wt, s, torch.zeros(4096, dtype=torch.int64), 0,
                                          torch.qint8)

    emit(cid, "torch amax + quantize_per_channel", timeit(torch_channel, args.repeat))

    def np_channel():
        s = np.abs(w).max(axis=1, keepdims=True) / np.float32(127.0)
        return np.clip(np.rint(w / s), -127, 127).astype(np.int8)

    emit(cid, "numpy, computing absmax scales", timeit(np_channel, args.repeat))


def magnitude(args):
    import torch

    cid = "prune/magnitude_global/16777216"
    w = random_weights(N16M, 1)
    kth = int(0.9 * N16M)

    def np_mask():
        a = np.abs(w)
        t = np.partition(a, kth)[kth]
        return (a >= t).astype(np.float32)

    emit(cid, "numpy abs + partition + where", timeit(np_mask, args.repeat))
    wt = torch.from_numpy(w)

    def torch_mask():
        a = wt.abs()
        t = torch.kthvalue(a, kth + 1).values
        return (a >= t).float()

    emit(cid, "torch.kthvalue", timeit(torch_mask, args.repeat))


def gemm_f32(args):
    import torch
    from onnx import TensorProto, helper

    shapes = [(1024, 1024, 1024), (128, 384, 384), (128, 384, 1536), (128, 1536, 384),
              (4096, 384, 384), (4096, 384, 1536), (4096, 1536, 384), (128, 32, 128)]
    for (m, k, n) in shapes:
        a = random_matrix(m, k, 2)
        b = random_matrix(k, n, 3)
        ids = [f"nn/gemm_f32/{m}x{k}x{n}"]
        if (m, k, n) == (1024, 1024, 1024):
            ids.append("quant/gemm_f32/1024x1024x1024")
        at, bt = torch.from_numpy(a), torch.from_numpy(b)
        ct = torch.empty(m, n)
        c = np.empty((m, n), np.float32)
        t_torch = timeit(lambda: torch.mm(at, bt, out=ct), args.repeat)
        t_np = timeit(lambda: np.matmul(a, b, out=c), args.repeat)
        model = onnx_model(
            [helper.make_node("MatMul", ["a", "b"], ["c"])],
            [tensor_info("a", TensorProto.FLOAT, [m, k]),
             tensor_info("b", TensorProto.FLOAT, [k, n])],
            [tensor_info("c", TensorProto.FLOAT, [m, n])],
        )
        sess = ort_session(model)
        t_ort = timeit(lambda: sess.run(None, {"a": a, "b": b}), args.repeat)
        for cid in ids:
            emit(cid, "torch.mm", t_torch)
            emit(cid, "numpy matmul (OpenBLAS)", t_np)
            emit(cid, "onnxruntime MatMul", t_ort)


def linear_f32(args):
    import torch
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = 64, 4096, 4096
    cid = "quant/linear_f32/64x4096x4096"
    x = random_matrix(m, k, 5)
    w = (random_matrix(n, k, 4) * np.float32(1.0 / 64.0)).astype(np.float32)
    bias = np.zeros(n, np.float32)
    lin = torch.nn.Linear(k, n)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
    xt = torch.from_numpy(x)
    with torch.inference_mode():
        emit(cid, "torch Linear", timeit(lambda: lin(xt), args.repeat))
    model = onnx_model(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
        [tensor_info("x", TensorProto.FLOAT, [m, k])],
        [tensor_info("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")],
    )
    sess = ort_session(model)
    emit(cid, "onnxruntime Gemm", timeit(lambda: sess.run(None, {"x": x}), args.repeat))

    # Integer paths: dynamic per-row activation quantization + int8 weights.
    cid = "quant/qlinear_i8/64x4096x4096"
    qlin = torch.ao.nn.quantized.dynamic.Linear(k, n, dtype=torch.qint8)
    qw = torch.quantize_per_channel(torch.from_numpy(w), torch.from_numpy(
        (np.abs(w).max(axis=1) / 127.0).astype(np.float32)).double(),
        torch.zeros(n, dtype=torch.int64), 0, torch.qint8)
    qlin.set_weight_bias(qw, torch.from_numpy(bias))
    with torch.inference_mode():
        emit(cid, "torch dynamic quantized Linear (fbgemm)", timeit(lambda: qlin(xt), args.repeat))
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "f32.onnx"), os.path.join(d, "i8.onnx")
        with open(src, "wb") as f:
            f.write(onnx_model(
                [helper.make_node("MatMul", ["x", "wt"], ["y"])],
                [tensor_info("x", TensorProto.FLOAT, [m, k])],
                [tensor_info("y", TensorProto.FLOAT, [m, n])],
                [numpy_helper.from_array(np.ascontiguousarray(w.T), "wt")],
            ))
        quantize_dynamic(src, dst, per_channel=True, weight_type=QuantType.QInt8)
        qsess = ort_session(dst)
    emit(cid, "onnxruntime quantize_dynamic (DynamicQuantizeLinear + MatMulInteger)",
         timeit(lambda: qsess.run(None, {"x": x}), args.repeat))
    # QLinearMatMul: u8 activations (per-tensor), i8 weights, u8 output; the activations
    # arrive already quantized, so ORT times the integer GEMM and its requantization only.
    x_scale = np.float32(np.abs(x).max() / 127.0)
    x_u8 = np.clip(np.rint(x / x_scale) + 128, 0, 255).astype(np.uint8)
    w_scale = np.float32(np.abs(w).max() / 127.0)
    w_i8 = np.clip(np.rint(w.T / w_scale), -127, 127).astype(np.int8)
    y_scale = np.float32(np.abs(x @ w.T).max() / 127.0)
    model = onnx_model(
        [helper.make_node("QLinearMatMul",
                          ["xq", "xs", "xz", "wq", "ws", "wz", "ys", "yz"], ["yq"])],
        [tensor_info("xq", TensorProto.UINT8, [m, k])],
        [tensor_info("yq", TensorProto.UINT8, [m, n])],
        [numpy_helper.from_array(np.array(x_scale), "xs"),
         numpy_helper.from_array(np.array(128, np.uint8), "xz"),
         numpy_helper.from_array(np.ascontiguousarray(w_i8), "wq"),
         numpy_helper.from_array(np.array(w_scale), "ws"),
         numpy_helper.from_array(np.array(0, np.int8), "wz"),
         numpy_helper.from_array(np.array(y_scale), "ys"),
         numpy_helper.from_array(np.array(128, np.uint8), "yz")],
    )
    qlsess = ort_session(model)
    emit(cid, "onnxruntime QLinearMatMul (u8 x i8, pre-quantized input)",
         timeit(lambda: qlsess.run(None, {"xq": x_u8}), args.repeat))

    cid = "quant/gemm_i8/1024x1024x1024"
    n = 1024
    a8 = np.clip(np.rint(random_matrix(n, n, 2) * 60), -127, 127).astype(np.int8)
    b8 = np.clip(np.rint(random_matrix(n, n, 3) * 60), -127, 127).astype(np.int8)
    a_u8 = (a8.astype(np.int16) + 128).astype(np.uint8)
    model = onnx_model(
        [helper.make_node("MatMulInteger", ["a", "b", "az"], ["c"])],
        [tensor_info("a", TensorProto.UINT8, [n, n])],
        [tensor_info("c", TensorProto.INT32, [n, n])],
        [numpy_helper.from_array(b8, "b"), numpy_helper.from_array(np.array(128, np.uint8), "az")],
    )
    isess = ort_session(model)
    emit(cid, "onnxruntime MatMulInteger (u8 x i8)",
         timeit(lambda: isess.run(None, {"a": a_u8}), args.repeat),
         "u8 x i8 pairs may saturate on CPUs without VNNI")


def csr_spmm(args):
    import scipy.sparse as sp
    import torch

    b = random_matrix(4096, 64, 4)
    w0 = random_matrix(4096, 4096, 3)
    bt = torch.from_numpy(b)
    for sparsity in (0.9, 0.99):
        cid = f"prune/csr_spmm/{sparsity}"
        a = np.abs(w0).ravel()
        kth = int(sparsity * a.size)
        t = np.partition(a, kth)[kth]
        w = np.where(np.abs(w0) >= t, w0, 0).astype(np.float32)
        csr = sp.csr_matrix(w)
        tcsr = torch.from_numpy(w).to_sparse_csr()
        emit(cid, "torch.sparse.mm (CSR)", timeit(lambda: torch.sparse.mm(tcsr, bt), args.repeat))
        emit(cid, "scipy.sparse CSR", timeit(lambda: csr @ b, args.repeat))


def kmeans(args):
    from sklearn.cluster import KMeans

    x = random_weights(1 << 20, 42).reshape(-1, 1).astype(np.float64)
    ks = (16, 256) if args.slow else (16,)
    for k in ks:
        cid = f"quant/kmeans_1d/1048576/{k}"
        km = KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=50, random_state=0)
        ms = timeit(lambda: km.fit(x), 1 if k > 16 else min(args.repeat, 3), min_total=0)
        emit(cid, "scikit-learn KMeans (k-means++, 50 iters)", ms,
             f"inertia {km.inertia_:.4f}")


def svd(args):
    import scipy.sparse.linalg as sla
    import torch

    n = 1024
    rng = np.random.default_rng(42)
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = 1.0 / (np.arange(n) + 1.0)
    a = ((u * s) @ v.T).astype(np.float32)
    cid = "arch/svd_rank64/1024x1024"
    emit(cid, "scipy svds (ARPACK)", timeit(lambda: sla.svds(a, k=64), args.repeat))
    at = torch.from_numpy(a)
    emit(cid, "torch.svd_lowrank", timeit(lambda: torch.svd_lowrank(at, q=64), args.repeat))


def convs(args):
    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    x = torch.from_numpy((rng.random((32, 64, 32, 32), dtype=np.float32) - 0.5))
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).eval()
    dw = torch.nn.Conv2d(64, 64, 3, padding=1, groups=64).eval()
    pw = torch.nn.Conv2d(64, 64, 1).eval()
    with torch.inference_mode():
        t = timeit(lambda: conv(x), args.repeat)
        emit("nn/conv2d/32x64x32x32", "torch Conv2d (NCHW)", t)
        emit("arch/conv2d_standard/32x64x32x32", "torch Conv2d (NCHW)", t)
        t = timeit(lambda: dw(x), args.repeat)
        emit("arch/depthwise3x3/32x64x32x32", "torch Conv2d groups=64 (NCHW)", t)
        emit("nn/conv2d_depthwise/32x64x32x32", "torch Conv2d groups=64 (NCHW)", t)
        emit("nn/conv2d_pointwise/32x64x32x32", "torch Conv2d 1x1 (NCHW)",
             timeit(lambda: pw(x), args.repeat))
        emit("arch/depthwise_separable/32x64x32x32", "torch depthwise + pointwise (NCHW)",
             timeit(lambda: pw(dw(x)), args.repeat))


def mlp_epoch(args):
    import torch

    torch.manual_seed(0)
    rng = np.random.default_rng(7)
    x = torch.from_numpy(rng.random((10_000, 784), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, 10_000))
    net = torch.nn.Sequential(
        torch.nn.Linear(784, 300), torch.nn.ReLU(),
        torch.nn.Linear(300, 100), torch.nn.ReLU(),
        torch.nn.Linear(100, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch():
        perm = torch.randperm(10_000)
        for i in range(0, 10_000, 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            opt.step()

    emit("nn/mlp_epoch/784-300-100-10", "torch (SGD, batch 64)",
         timeit(epoch, min(args.repeat, 5)))


def minilm_config():
    from transformers import BertConfig

    return BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                      num_attention_heads=12, intermediate_size=1536,
                      max_position_embeddings=512, hidden_act="gelu")


def export_encoder(model, path, ids):
    """Exports a transformers `BertModel`'s last hidden state as an f32 ONNX model with
    inputs `input_ids`, `attention_mask` (batch and length dynamic), traced on `ids`."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, mask):
            return self.m(input_ids=ids, attention_mask=mask).last_hidden_state

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Encoder(model).eval(), (ids, torch.ones_like(ids)), path,
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": {0: "b", 1: "s"},
                          "attention_mask": {0: "b", 1: "s"},
                          "last_hidden_state": {0: "b", 1: "s"}},
            opset_version=17, dynamo=False)


def bert(args):
    """MiniLM-L6 shapes (random weights, or the real model with --model-dir): the encoder's
    last hidden state for batch x 128 tokens, no padding."""
    import torch
    from transformers import BertModel

    torch.manual_seed(0)
    if args.model_dir:
        model = BertModel.from_pretrained(args.model_dir, add_pooling_layer=False)
        source = f"weights from {args.model_dir}"
    else:
        model = BertModel(minilm_config(), add_pooling_layer=False)
        source = "random weights, MiniLM-L6 config"
    model.eval()

    rng = np.random.default_rng(0)
    batches = {b: rng.integers(0, 30522, (b, 128)).astype(np.int64) for b in (1, 32)}
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as d:
        f32 = os.path.join(d, "minilm.onnx")
        i8 = os.path.join(d, "minilm-int8.onnx")
        export_encoder(model, f32, torch.from_numpy(batches[1]))
        quantize_dynamic(f32, i8, per_channel=True, weight_type=QuantType.QInt8)
        sess = {"onnxruntime f32": ort_session(f32),
                "onnxruntime int8 (quantize_dynamic, per-channel)": ort_session(i8)}
    for b, ids in batches.items():
        cid = f"nn/bert_encode/b{b}s128"
        mask = np.ones_like(ids)
        rep = args.repeat if b == 1 else max(3, args.repeat // 2)
        for name, s in sess.items():
            runs = timeit(lambda: s.run(None, {"input_ids": ids, "attention_mask": mask}),
                          rep, min_total=0 if b > 1 else 1.0)
            emit(cid, name, runs, source)
            if "int8" in name:
                # The same runs beside our W8A8 encoder.
                emit(f"quant/bert_encode_int8/b{b}s128", name, runs, source)
        it, mt = torch.from_numpy(ids), torch.from_numpy(mask)
        with torch.inference_mode():
            run = lambda: model(input_ids=it, attention_mask=mt).last_hidden_state  # noqa: E731
            emit(cid, "torch f32 (transformers BertModel)",
                 timeit(run, rep, min_total=0 if b > 1 else 1.0), source)


WORKLOADS = {
    "quantize": quantize,
    "magnitude": magnitude,
    "gemm_f32": gemm_f32,
    "linear": linear_f32,
    "csr_spmm": csr_spmm,
    "kmeans": kmeans,
    "svd": svd,
    "conv": convs,
    "mlp_epoch": mlp_epoch,
    "bert": bert,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", default=[],
                   help=f"workloads to run (default all): {' '.join(WORKLOADS)}")
    p.add_argument("--repeat", type=int, default=5, help="timed runs at least (default 5)")
    p.add_argument("--slow", action="store_true", help="also k-means with k = 256 (~40 s)")
    p.add_argument("--model-dir", default=None,
                   help="a Hugging Face MiniLM directory instead of random weights")
    args = p.parse_args()
    unknown = [w for w in args.only if w not in WORKLOADS]
    if unknown:
        p.error(f"unknown workloads {unknown}; known: {list(WORKLOADS)}")
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    for name, fn in WORKLOADS.items():
        if args.only and name not in args.only:
            continue
        print(f"peers: {name}", file=sys.stderr, flush=True)
        fn(args)


if __name__ == "__main__":
    main()
