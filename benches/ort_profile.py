#!/usr/bin/env python3
"""Per-node times of onnxruntime on one model, 1 thread, batch 1: the other side of issue 18's
fp32 comparison, next to ign-edge's per-node profile (`ign-edge bench --profile --json F`,
its `profile_nodes`; docs/performance.md has both side by side).

Usage: <venv with numpy onnxruntime>/bin/python benches/ort_profile.py MODEL.onnx [RUNS]
Profiling adds about 1-2 us per node.
"""
import collections
import json
import os
import sys
import tempfile

import numpy as np
import onnxruntime as ort


def main():
    model = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = (np.random.default_rng(7).standard_normal(shape) * 0.5).astype(np.float32)
    for _ in range(runs):
        s.run(None, {inp.name: x})
    events = json.load(open(s.end_profiling()))
    total, count = collections.defaultdict(float), collections.defaultdict(int)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            key = f'{e["args"].get("op_name", "")} {e["name"][: -len("_kernel_time")]}'
            total[key] += e["dur"]
            count[key] += 1
    sum_us = 0.0
    for key, us in total.items():
        print(f"{us / count[key]:8.2f} us  {key}")
        sum_us += us / count[key]
    print(f"{sum_us:8.2f} us  total")


if __name__ == "__main__":
    main()
