#!/usr/bin/env python3
"""Runs netcompress's criterion benchmarks and the peers (peers.py) back to back on this
machine and writes ONE markdown table: criterion id, ours (the widest ISA this CPU has),
ours with the kernels forced to AVX2 (NETCOMPRESS_ISA=avx2), the peer, its time and the
ratios, with the CPU model and the ISA path our kernels took.

Ours are single-threaded (the bench binary pins rayon to one thread unless
RAYON_NUM_THREADS is set); the peers are pinned to one thread in peers.py. With
--rounds N the whole sequence (ours, ours forced to AVX2, peers) runs N times and each
figure is the median over the rounds; the table notes the spread.

Usage (from the repository root):
    python benches/peers/run.py --out docs/peers-table.md [--rounds 3] [--only gemm_f32 bert]
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEERS = Path(__file__).resolve().with_name("peers.py")


def cpu_model():
    """lscpu's model name, with the family and model numbers (virtual machines often report
    only a brand such as "AMD EPYC")."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    fields = {}
    for line in out.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    name = fields.get("Model name", "unknown CPU")
    if "CPU family" in fields:
        name += f" (family {fields['CPU family']}, model {fields.get('Model', '?')})"
    return name


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def run_peers(args):
    """The peers' measurements: a list of dicts (id, peer, ms, note)."""
    env = dict(os.environ)
    # A current numpy picks its best OpenBLAS kernels only without these overrides.
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    cmd = [args.python, str(PEERS), "--repeat", str(args.repeat)]
    if args.only:
        cmd += ["--only", *args.only]
    if args.model_dir:
        cmd += ["--model-dir", args.model_dir]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    sys.stderr.write(out.stderr[-4000:])
    if out.returncode != 0:
        sys.exit(f"peers.py failed with exit code {out.returncode}")
    rows = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def criterion_dir():
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "criterion"


def run_ours(ids, isa, args):
    """Median time in ms of each criterion id, running the bench binary under `isa`."""
    env = dict(os.environ)
    env.pop("RAYON_NUM_THREADS", None)
    if isa:
        env["NETCOMPRESS_ISA"] = isa
    else:
        env.pop("NETCOMPRESS_ISA", None)
    pattern = "^(" + "|".join(re.escape(i) for i in sorted(ids)) + ")$"
    cmd = ["cargo", "bench", "-p", "compress-benches", "--bench", "main", "--", pattern,
           "--warm-up-time", str(args.warm_up), "--measurement-time", str(args.measure),
           "--noplot"]
    print("+", ("NETCOMPRESS_ISA=" + isa + " ") if isa else "", " ".join(cmd),
          file=sys.stderr, flush=True)
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-4000:])
        sys.exit(f"cargo bench failed with exit code {out.returncode}")
    path_line = [l for l in out.stderr.splitlines() if l.startswith("kernels:")]
    result = {}
    # Criterion turns some characters of an id into `_` in its directory names: find each
    # id through the `full_id` its benchmark.json records.
    for bench in criterion_dir().glob("**/new/benchmark.json"):
        try:
            with open(bench) as f:
                full_id = json.load(f).get("full_id")
        except (OSError, ValueError):
            continue  # a file another run is writing, or left half-written
        est = bench.with_name("estimates.json")
        if full_id in ids and est.exists():
            with open(est) as f:
                result[full_id] = json.load(f)["median"]["point_estimate"] / 1e6
            # Consumed: a later run that skips this id must not read it again.
            shutil.rmtree(bench.parent)
    return result, (path_line[0] if path_line else "kernels: unknown")


def fmt_ms(v):
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.4f}"


def spread(vals):
    vals = [v for v in vals if v is not None]
    if len(vals) < 2:
        return None
    med = statistics.median(vals)
    return (max(vals) - min(vals)) / med if med else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="markdown file to write (default: stdout)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--only", nargs="*", default=[], help="peers.py workloads to run")
    p.add_argument("--repeat", type=int, default=5, help="peers' timed runs at least")
    p.add_argument("--warm-up", type=float, default=1.0, help="criterion warm-up seconds")
    p.add_argument("--measure", type=float, default=3.0, help="criterion measurement seconds")
    p.add_argument("--no-avx2", action="store_true", help="skip the forced-AVX2 run")
    p.add_argument("--model-dir", default=None, help="passed to peers.py")
    p.add_argument("--python", default=str(ROOT.parent / "venv" / "bin" / "python")
                   if (ROOT.parent / "venv" / "bin" / "python").exists() else sys.executable,
                   help="the Python with requirements.txt installed")
    args = p.parse_args()

    flags = cpu_flags()
    has512 = {"avx512f", "avx512bw", "avx512vl"} <= flags
    peer_runs, ours_runs, avx2_runs, paths = [], [], [], []
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        peers = run_peers(args)
        ids = sorted({row["id"] for row in peers})
        ours, path = run_ours(ids, None, args)
        paths.append(path)
        avx2 = {}
        if has512 and not args.no_avx2:
            avx2, path2 = run_ours(ids, "avx2", args)
            paths.append(path2)
        peer_runs.append(peers)
        ours_runs.append(ours)
        avx2_runs.append(avx2)

    keys = []
    for row in peer_runs[0]:
        k = (row["id"], row["peer"])
        if k not in keys:
            keys.append(k)
    lines = []
    cpu = cpu_model()
    native = "AVX-512" if has512 else ("AVX2" if "avx2" in flags else "portable")
    vnni = " + VNNI" if "avx512_vnni" in flags else ""
    lines.append(f"CPU: **{cpu}** ({os.cpu_count()} logical CPUs; native kernels {native}{vnni}). "
                 f"One thread for ours and the peers; median of {args.rounds} round(s), each "
                 f"a criterion median (ours) or the median of at least {args.repeat} runs "
                 f"(peers).")
    lines.append("")
    lines.append("Kernel paths: " + "; ".join(sorted(set(paths))) + ".")
    lines.append("")
    head = "| criterion id | ours ms | "
    if has512 and not args.no_avx2:
        head += "ours, forced AVX2, ms | "
    head += "peer | peer ms | ours / peer |"
    if has512 and not args.no_avx2:
        head += " AVX2 / peer |"
    lines.append(head)
    lines.append("|" + "---|" * (head.count("|") - 1))
    noisy = []
    for cid, peer in keys:
        peer_ms = [next((x["ms"] for x in run if x["id"] == cid and x["peer"] == peer), None)
                   for run in peer_runs]
        notes = {x.get("note", "") for run in peer_runs for x in run
                 if x["id"] == cid and x["peer"] == peer and x.get("note")}
        ours = [o.get(cid) for o in ours_runs]
        av2 = [o.get(cid) for o in avx2_runs]
        med = lambda v: statistics.median([x for x in v if x is not None]) \
            if any(x is not None for x in v) else None  # noqa: E731
        pm, om, am = med(peer_ms), med(ours), med(av2)
        ratio = f"{om / pm:.2f}x" if om and pm else "-"
        label = peer + (f" ({'; '.join(sorted(notes))})" if notes else "")
        row = f"| `{cid}` | {fmt_ms(om)} | "
        if has512 and not args.no_avx2:
            row += f"{fmt_ms(am)} | "
        row += f"{label} | {fmt_ms(pm)} | {ratio} |"
        if has512 and not args.no_avx2:
            row += f" {am / pm:.2f}x |" if am and pm else " - |"
        lines.append(row)
        for name, vals in (("ours", ours), ("peer " + peer, peer_ms)):
            s = spread(vals)
            if s is not None and s > 0.15:
                noisy.append(f"`{cid}` {name}: spread {s * 100:.0f}% over the rounds")
    if noisy:
        lines.append("")
        lines.append("Noisy figures (max - min over the rounds, relative to the median): "
                     + "; ".join(noisy) + ".")
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
