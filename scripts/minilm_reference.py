"""Reference sentence embeddings of a BERT sentence-transformers model directory.

Runs the model with Hugging Face transformers the way sentence-transformers does:
tokenize with padding to the batch's longest and truncation at max_seq_length
(sentence_bert_config.json, 256 for all-MiniLM-L6-v2), take last_hidden_state, mean-pool
over the attention mask (sum / clamp(count, 1e-9)), L2-normalise (F.normalize, eps 1e-12).
Writes a safetensors file with one F32 tensor `embeddings` [N, dim], row i for line i of
the sentence file (non-empty lines).

Usage (the project's venv: torch 2.15, transformers 5.25, safetensors 0.8):
  python scripts/minilm_reference.py MODEL_DIR SENTENCES OUT.safetensors [--dtype float32|float64]
"""

import argparse
import json
import os

import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("sentences")
    ap.add_argument("out")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.set_num_threads(1)

    with open(args.sentences, encoding="utf-8") as f:
        sentences = [line.strip() for line in f if line.strip()]
    max_len = 512
    cfg = os.path.join(args.model_dir, "sentence_bert_config.json")
    if os.path.exists(cfg):
        with open(cfg) as f:
            max_len = json.load(f).get("max_seq_length", max_len)

    tok = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModel.from_pretrained(args.model_dir, torch_dtype=dtype).eval()
    rows = []
    with torch.no_grad():
        for i in range(0, len(sentences), args.batch_size):
            batch = sentences[i : i + args.batch_size]
            enc = tok(batch, padding=True, truncation=True, max_length=max_len,
                      return_tensors="pt")
            out = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
            pooled = (out * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
            rows.append(torch.nn.functional.normalize(pooled, p=2, dim=1))
    emb = torch.cat(rows).to(torch.float32).contiguous()
    save_file({"embeddings": emb}, args.out)
    print(f"wrote {args.out}: {tuple(emb.shape)} ({args.dtype} forward, max_len {max_len})")


if __name__ == "__main__":
    main()
