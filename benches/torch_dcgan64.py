"""A 64x64x3 IGN exported from PyTorch as a new user brings one: the DCGAN form of the public IGN
ports (the paper's CelebA network, width 64 by default, BatchNorm after every inner Conv and
ConvTranspose), trained a few steps so that BatchNorm's running statistics are not the
defaults, then `torch.onnx.export`ed in eval mode. The exporter leaves one BatchNormalization
node after each normalised conv, which is what ign-edge folds at load (issue #31).

Usage:
    python3 -m venv venv && venv/bin/pip install torch numpy onnx onnxscript && \
        venv/bin/python benches/torch_dcgan64.py [--width 64] [--steps 30] [--out runs/torch64/ign64-torch.onnx]

then, for example:
    ign-edge quantize -m runs/torch64/ign64-torch.onnx --precision int8 --calib noise:32 --report q.json
    benches/compare_ort.sh runs/torch64/ign64-torch.onnx

The network is benches/ign_step_torch.py's (the trainer's architecture); the training images
are smooth random colour fields (bilinear 8x8 noise), since only the weights' and BatchNorm's
statistics matter here. Deterministic given --seed. Not committed: 55 MB at width 64.
"""
import argparse
import os

import torch
import torch.nn.functional as F

from ign_step_torch import Ign, dist


def images(n, generator):
    """Smooth random colour fields in [-1, 1], [n, 3, 64, 64]."""
    low = torch.rand(n, 3, 8, 8, generator=generator) * 2 - 1
    return torch.tanh(1.5 * F.interpolate(low, size=(64, 64), mode="bilinear", align_corners=False))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--out", default="runs/torch64/ign64-torch.onnx")
    ap.add_argument(
        "--io",
        metavar="PREFIX",
        help="also write PREFIX_x.npy (2 smooth random images) and PREFIX_y.npy (f of them, by "
        "PyTorch in eval mode): what a runtime must reproduce",
    )
    ap.add_argument(
        "--exporter",
        choices=["dynamo", "torchscript"],
        default="dynamo",
        help="torch.onnx.export's default since PyTorch 2.9 (keeps every BatchNormalization; "
        "needs onnxscript), or the legacy one (folds BatchNorm into a Conv, not a ConvTranspose)",
    )
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(a.seed)
    f = Ign(3, a.width, "batch", size=64)
    opt = torch.optim.Adam(f.parameters(), lr=1e-3, betas=(0.5, 0.999))
    f.train()
    for step in range(a.steps):
        x = images(a.batch, g)
        loss = dist(f(x), x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == a.steps - 1:
            print(f"step {step}: reconstruction {loss.item():.4f}", flush=True)
    f.eval()
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    x = images(1, g)
    torch.onnx.export(
        f,
        (x,),
        a.out,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=a.opset,
        dynamo=a.exporter == "dynamo",
    )
    import onnx

    m = onnx.load(a.out)
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    if a.io:
        import numpy as np

        x2 = images(2, g)
        with torch.no_grad():
            y2 = f(x2)
        np.save(a.io + "_x.npy", x2.numpy().astype(np.float32))
        np.save(a.io + "_y.npy", y2.numpy().astype(np.float32))
    params = sum(p.numel() for p in f.parameters())
    print(f"{a.out}: {params} parameters, {os.path.getsize(a.out)} bytes, ops {ops}")


if __name__ == "__main__":
    main()
