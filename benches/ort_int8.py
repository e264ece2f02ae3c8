"""onnxruntime's side of benches/compare_ort.sh --int8: its own int8 anchor, timings, and a check
that ign-edge's int8 file loads in onnxruntime and matches tract.

  python benches/ort_int8.py qdq FP32.onnx OUT.onnx        # onnxruntime's QDQ int8 (per-channel)
  python benches/ort_int8.py time MODEL.onnx THREADS N      # p50 us of N batch-1 calls, one line
  python benches/ort_int8.py match MODEL.onnx X.npy Y.npy   # max |ort(X) - Y| and PSNR vs Y
  python benches/ort_int8.py noise MODEL.onnx N X.npy       # N Gaussian inputs for MODEL

Needs: pip install numpy onnxruntime onnx
"""
import sys
import time

import numpy as np
import onnxruntime as ort


def session(path, threads=1):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def shape_of(sess):
    return [d if isinstance(d, int) and d > 0 else 1 for d in sess.get_inputs()[0].shape]


def qdq(src, dst):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    shape = shape_of(session(src))
    name = session(src).get_inputs()[0].name
    rng = np.random.default_rng(0)

    class Noise(CalibrationDataReader):
        def __init__(self):
            self.left = 64

        def get_next(self):
            if self.left == 0:
                return None
            self.left -= 1
            return {name: rng.standard_normal(shape).astype(np.float32)}

    quantize_static(src, dst, Noise(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)


def timing(path, threads, n):
    sess = session(path, threads)
    x = np.random.default_rng(0).standard_normal(shape_of(sess)).astype(np.float32)
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(10):
        sess.run(None, feed)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        sess.run(None, feed)
        ts.append((time.perf_counter() - t) * 1e6)
    print(f"{np.median(ts):.1f}")


def match(path, x_npy, y_npy):
    sess = session(path)
    x, want = np.load(x_npy), np.load(y_npy)
    got = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1]})[0]
                          for i in range(len(x))])
    mse = float(np.mean((got - want) ** 2))
    psnr = 10 * np.log10(4.0 / mse) if mse > 0 else float("inf")
    print(f"{float(np.max(np.abs(got - want))):.4f} {psnr:.1f}")


def noise(path, n, out):
    shape = shape_of(session(path))
    x = np.random.default_rng(5).standard_normal([int(n)] + shape[1:]).astype(np.float32)
    np.save(out, x)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"qdq": lambda: qdq(*args),
     "time": lambda: timing(args[0], int(args[1]), int(args[2])),
     "match": lambda: match(*args),
     "noise": lambda: noise(*args)}[cmd]()
