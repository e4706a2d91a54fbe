#!/usr/bin/env python3
"""Fidelity of ONNX Runtime's int8 MiniLM to the f32 model, on the held-out sentences, with the
metrics of `netcompress eval` (compress_transformer::metrics), to put beside our W8A8 row.

The model directory is exported to ONNX (f32, the encoder's last hidden state), quantized
with `onnxruntime.quantization.quantize_dynamic` (int8 weights, dynamic uint8 activations;
per-channel and per-tensor), and each ORT model embeds the sentences the way
sentence-transformers does (padding to the batch's longest, truncation at max_seq_length,
mean pooling over the attention mask, L2 normalisation). The reference is the f32 ONNX
model (its embeddings match PyTorch's and ours to ~1e-6 cosine; printed as a check).

Sentences: by default the evaluation half of the project's sentence file (lines 151-300 of
crates/compress-transformer/data/sentences.txt, the sentences `netcompress eval` uses by
default and that calibration never sees); `--file F` for any other file (all its non-empty
lines).

Metrics (as compress_transformer::metrics): per-sentence cosine (mean, min), top-1
nearest-neighbour agreement (lowest index on ties), Spearman correlation of all pairwise
similarities (average ranks on ties).

Usage: python benches/peers/accuracy.py MODEL_DIR [--file SENTENCES] [--batch-size 32]
Prints one JSON line per ORT model.
"""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from peers import export_encoder  # noqa: E402  (same directory)

warnings.filterwarnings("ignore")

HERE = os.path.dirname(os.path.abspath(__file__))
SENTENCES = os.path.join(HERE, "..", "..", "crates", "compress-transformer", "data",
                         "sentences.txt")


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def evaluation_half(lines):
    """The second half of the shipped file (the first half calibrates)."""
    return lines[len(lines) // 2:]


def cosine_rows(a, b):
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = (a * b).sum(axis=1)
    out = np.zeros(len(a))
    ok = (na > 0) & (nb > 0)
    out[ok] = dot[ok] / (na[ok] * nb[ok])
    return out


def similarity(a):
    n = np.linalg.norm(a, axis=1, keepdims=True)
    u = np.divide(a, n, out=np.zeros_like(a), where=n > 0)
    return u @ u.T


def nearest(sim):
    s = sim.copy()
    np.fill_diagonal(s, -np.inf)
    return s.argmax(axis=1)  # first maximum: the lowest index on ties


def ranks(x):
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    xs = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return r


def fidelity(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    cos = cosine_rows(a, b)
    sa, sb = similarity(a), similarity(b)
    top1 = float((nearest(sa) == nearest(sb)).mean())
    iu = np.triu_indices(len(a), k=1)
    ra, rb = ranks(sa[iu]), ranks(sb[iu])
    spearman = float(np.corrcoef(ra, rb)[0, 1])
    return {"sentences": len(a), "mean_cosine": float(cos.mean()),
            "min_cosine": float(cos.min()), "top1_agreement": top1, "spearman": spearman}


def export(model_dir, path):
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    export_encoder(model, path, torch.ones((1, 8), dtype=torch.int64))
    return model


def embed(run, tok, sentences, max_len, batch_size):
    rows = []
    for i in range(0, len(sentences), batch_size):
        enc = tok(sentences[i:i + batch_size], padding=True, truncation=True,
                  max_length=max_len, return_tensors="np")
        ids = enc["input_ids"].astype(np.int64)
        mask = enc["attention_mask"].astype(np.int64)
        out = run(ids, mask).astype(np.float64)
        m = mask[..., None].astype(np.float64)
        pooled = (out * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        norm = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        rows.append(pooled / norm)
    return np.concatenate(rows).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--file", default=None, help="sentences (default: the evaluation half)")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    if args.file:
        sentences, source = read_lines(args.file), args.file
    else:
        sentences = evaluation_half(read_lines(SENTENCES))
        source = "shipped sentences.txt, evaluation half (lines 151-300)"
    max_len = 512
    cfg = os.path.join(args.model_dir, "sentence_bert_config.json")
    if os.path.exists(cfg):
        with open(cfg) as f:
            max_len = json.load(f).get("max_seq_length", max_len)
    tok = AutoTokenizer.from_pretrained(args.model_dir)

    def session(path):
        o = ort.SessionOptions()
        o.intra_op_num_threads = 1
        o.inter_op_num_threads = 1
        s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
        return lambda ids, mask: s.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    with tempfile.TemporaryDirectory() as d:
        f32 = os.path.join(d, "minilm.onnx")
        model = export(args.model_dir, f32)
        variants = {}
        for per_channel in (True, False):
            path = os.path.join(d, f"minilm-int8-{'pc' if per_channel else 'pt'}.onnx")
            quantize_dynamic(f32, path, per_channel=per_channel, weight_type=QuantType.QInt8)
            variants[per_channel] = (path, os.path.getsize(path))
        ref = embed(session(f32), tok, sentences, max_len, args.batch_size)

        def torch_run(ids, mask):
            with torch.inference_mode():
                return model(input_ids=torch.from_numpy(ids),
                             attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()

        check = embed(torch_run, tok, sentences, max_len, args.batch_size)
        print(json.dumps({"run": "onnxruntime f32 vs torch f32 (check)", "source": source,
                          **fidelity(check, ref)}))
        for per_channel, (path, size) in variants.items():
            got = embed(session(path), tok, sentences, max_len, args.batch_size)
            name = ("onnxruntime quantize_dynamic int8 "
                    f"({'per-channel' if per_channel else 'per-tensor'} weights)")
            print(json.dumps({"run": name, "source": source, "onnx_bytes": size,
                              "onnxruntime": ort.__version__, **fidelity(ref, got)}))


if __name__ == "__main__":
    main()
