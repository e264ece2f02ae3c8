"""Baseline latency of an ONNX model under onnxruntime (CPU, batch 1), to compare with ign-edge.

Usage: python benches/ort_latency.py MODEL.onnx [--iterations 200] [--threads 1]
Prints one JSON line. Needs: pip install numpy onnxruntime
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1

    t0 = time.perf_counter()
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]  # dynamic dims -> 1
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    feed = {inp.name: x}
    sess.run(None, feed)
    load_to_first_ms = (time.perf_counter() - t0) * 1e3

    for _ in range(10):
        sess.run(None, feed)
    times = []
    for _ in range(args.iterations):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t) * 1e6)

    print(json.dumps({
        "runtime": "onnxruntime",
        "version": ort.__version__,
        "model": args.model,
        "threads": args.threads,
        "p50_us": round(float(np.median(times)), 1),
        "mean_us": round(float(np.mean(times)), 1),
        "load_to_first_output_ms": round(load_to_first_ms, 2),
    }))


if __name__ == "__main__":
    main()
