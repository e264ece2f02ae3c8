#!/usr/bin/env python3
"""onnxruntime's time per ONNX node (median over the runs), to set beside ign-edge's per-node
profile (`ign-edge bench --profile --json F`, its `profile_nodes`) when looking for where the
fp32 gap is (docs/performance.md, "Layer by layer against onnxruntime").

    PY=venv/bin/python; $PY benches/ort_layers.py MODEL.onnx [RUNS] [THREADS]

Needs numpy and onnxruntime. onnxruntime names its fused nodes after the ONNX node they start
from (enc.0.act_nchwc: the first conv with its activation); ConvTranspose keeps its name.
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
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    for _ in range(runs):
        s.run(None, {inp.name: x})
    times = collections.defaultdict(list)
    with open(s.end_profiling()) as f:
        for e in json.load(f):
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                times[(e["name"][: -len("_kernel_time")], e["args"].get("op_name", ""))].append(e["dur"])
    rows = sorted(((sorted(v)[len(v) // 2], k) for k, v in times.items()), reverse=True)
    for us, (name, op) in rows:
        print(f"{name:32s} {op:16s} {us:7d} us")
    print(f"{'total':49s} {sum(r[0] for r in rows):7d} us")


if __name__ == "__main__":
    main()
