#!/usr/bin/env python3
"""Helpers of the Flink differential test (see run.sh).

generate OUT_DIR SEED COUNT   write COUNT random cases (spec.json, events.jsonl)
compare EDDY.jsonl FLINK.jsonl  exit 0 if equal up to the order of ties Flink leaves open

Canonical form: outputs grouped by step in step order; inside a step, the
outputs caused by the record itself (late record or late updates) keep their
order, then on-time firings sorted by (window_end, key, window_start):
Flink's timer heap has no defined order among equal window_ends (Eddyline
orders them by key), and Flink delivers its late side output on
another path than its firings.
"""
import json
import random
import sys
from pathlib import Path

KEYS = ["u1", "u2", "ü", "日本", "🦀", "", "a b", 'q"uote']


def generate(out_dir, seed, count):
    rng = random.Random(seed)
    out = Path(out_dir)
    for case in range(count):
        kind = rng.choice(["tumbling", "sliding", "sliding-uneven", "session"])
        scale = rng.choice([1, 10, 1000])
        if kind == "tumbling":
            window = {"kind": "tumbling", "size": rng.randint(1, 40) * scale,
                      "offset": rng.randint(-50, 50) * scale}
        elif kind == "sliding":
            slide = rng.randint(1, 15) * scale
            window = {"kind": "sliding", "size": slide * rng.randint(1, 5), "slide": slide,
                      "offset": rng.randint(-50, 50) * scale}
        elif kind == "sliding-uneven":
            slide = rng.randint(1, 15) * scale
            window = {"kind": "sliding", "size": slide + rng.randint(0, 40) * scale, "slide": slide,
                      "offset": rng.randint(-50, 50) * scale}
        else:
            window = {"kind": "session", "gap": rng.randint(1, 30) * scale}
        spec = {"window": window,
                "out_of_orderness": rng.choice([0, rng.randint(0, 20)]) * scale,
                "allowed_lateness": rng.choice([0, rng.randint(0, 30)]) * scale}
        keys = rng.sample(KEYS, rng.randint(1, 5))
        ts = rng.randint(-300, 300) * scale
        lines = []
        for _ in range(rng.randint(0, 300)):
            ts += (rng.randint(-25, 25) if rng.random() < 0.9 else rng.randint(-150, 150)) * scale
            lines.append(json.dumps({"key": rng.choice(keys), "ts": ts, "value": rng.randint(-100, 100)},
                                    ensure_ascii=False))
        case_dir = out / f"random-{seed}-{case:03}"
        case_dir.mkdir(parents=True, exist_ok=True)
        (case_dir / "spec.json").write_text(json.dumps(spec) + "\n")
        (case_dir / "events.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def canonical(path):
    steps = {}
    for text in Path(path).read_text(encoding="utf-8").splitlines():
        line = json.loads(text)
        steps.setdefault(line["step"], []).append(line)
    result = []
    for step in sorted(steps):
        own = [line for line in steps[step] if line.get("kind") != "on_time"]
        on_time = sorted((line for line in steps[step] if line.get("kind") == "on_time"),
                         key=lambda line: (line["window_end"], line["key"].encode(), line["window_start"]))
        result.extend(own + on_time)
    return result


def compare(eddy, flink):
    a, b = canonical(eddy), canonical(flink)
    if a == b:
        return 0
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            print(f"  first difference at output {index}:\n    eddy:  {json.dumps(x, ensure_ascii=False)}\n"
                  f"    flink: {json.dumps(y, ensure_ascii=False)}")
            break
    else:
        print(f"  eddy has {len(a)} outputs, flink {len(b)}")
    return 1


if __name__ == "__main__":
    if sys.argv[1] == "generate":
        generate(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
