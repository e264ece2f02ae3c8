"""PyTorch reference of one ign-edge training step (CPU), to compare the Rust trainer's speed.

Same network as trainer/src/model.rs (the DCGAN encoder-decoder for 28x28, 32x32 or 64x64 images,
LayerNorm or BatchNorm) and
same objective as trainer/src/loss.rs (reconstruction + idempotence + tanh-clamped tightness,
Adam lr 1e-4, betas (0.5, 0.999)). Data are random: only the time per step matters here.

Usage:
    python3 -m venv venv && venv/bin/pip install torch numpy && \
        venv/bin/python benches/ign_step_torch.py --width 32 --batch 64 --threads 2

The scene recipe's network (64x64 RGB, width 16, BatchNorm, batch 32):

    venv/bin/python benches/ign_step_torch.py --image-size 64 --channels 3 --width 16 \
        --batch 32 --norm batch --threads 2

against `ign-train bench-step --image-size 64 --channels 3 --width 16 --batch 32 --threads 2`.

Prints one JSON line: runtime, version, width, batch, norm, params, threads, step_s (median
seconds per training step), images_per_s (batch / step_s), forward_b1_ms (median batch-1
forward under no_grad).
"""
import argparse
import json
import statistics
import time

import torch
from torch import nn
from torch.func import functional_call

EPS = 1e-5


class LayerNorm(nn.Module):
    """Per-sample normalization over (C, H, W), then a per-channel scale and shift."""

    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        var = (x - mean).square().mean(dim=(1, 2, 3), keepdim=True)  # biased
        x = (x - mean) / torch.sqrt(var + EPS)
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class Block(nn.Module):
    """Conv or transposed conv, optional norm (then no conv bias), activation."""

    def __init__(self, transpose, cin, cout, k, s, p, norm, act, norm_kind):
        super().__init__()
        conv = nn.ConvTranspose2d if transpose else nn.Conv2d
        self.conv = conv(cin, cout, k, s, p, bias=not norm)
        if norm and norm_kind == "layer":
            self.ln = LayerNorm(cout)
        elif norm and norm_kind == "batch":
            self.bn = nn.BatchNorm2d(cout, eps=EPS, momentum=0.1)
        self.act = {
            "lrelu": nn.LeakyReLU(0.2),
            "relu": nn.ReLU(),
            "tanh": nn.Tanh(),
            None: nn.Identity(),
        }[act]

    def forward(self, x):
        x = self.conv(x)
        if hasattr(self, "ln"):
            x = self.ln(x)
        elif hasattr(self, "bn"):
            x = self.bn(x)
        return self.act(x)


def layer_specs(c, w, size):
    """(encoder, decoder) layers as trainer/src/model.rs: (transpose, cin, cout, k, s, p, norm,
    act). The image goes to a latent of 4w (28, 32) or 8w (64) channels at 1x1 and back."""
    if size == 28:
        enc = [(False, c, w, 4, 2, 1, False, "lrelu"),
               (False, w, 2 * w, 4, 2, 1, True, "lrelu"),
               (False, 2 * w, 4 * w, 3, 2, 1, True, "lrelu"),
               (False, 4 * w, 4 * w, 4, 1, 0, False, None)]
        dec = [(True, 4 * w, 4 * w, 4, 1, 0, True, "relu"),
               (True, 4 * w, 2 * w, 3, 2, 1, True, "relu"),
               (True, 2 * w, w, 4, 2, 1, True, "relu"),
               (True, w, c, 4, 2, 1, False, "tanh")]
    elif size == 32:
        enc = [(False, c, w, 4, 2, 1, False, "lrelu"),
               (False, w, 2 * w, 4, 2, 1, True, "lrelu"),
               (False, 2 * w, 4 * w, 4, 2, 1, True, "lrelu"),
               (False, 4 * w, 4 * w, 4, 1, 0, False, None)]
        dec = [(True, 4 * w, 4 * w, 4, 1, 0, True, "relu"),
               (True, 4 * w, 2 * w, 4, 2, 1, True, "relu"),
               (True, 2 * w, w, 4, 2, 1, True, "relu"),
               (True, w, c, 4, 2, 1, False, "tanh")]
    else:
        enc = [(False, c, w, 4, 2, 1, False, "lrelu"),
               (False, w, 2 * w, 4, 2, 1, True, "lrelu"),
               (False, 2 * w, 4 * w, 4, 2, 1, True, "lrelu"),
               (False, 4 * w, 8 * w, 4, 2, 1, True, "lrelu"),
               (False, 8 * w, 8 * w, 4, 1, 0, False, None)]
        dec = [(True, 8 * w, 8 * w, 4, 1, 0, True, "relu"),
               (True, 8 * w, 4 * w, 4, 2, 1, True, "relu"),
               (True, 4 * w, 2 * w, 4, 2, 1, True, "relu"),
               (True, 2 * w, w, 4, 2, 1, True, "relu"),
               (True, w, c, 4, 2, 1, False, "tanh")]
    return enc, dec


class Ign(nn.Module):
    """The network f: image -> latent x 1 x 1 -> image."""

    def __init__(self, c, w, norm, size=28):
        super().__init__()
        enc, dec = layer_specs(c, w, size)
        self.enc = nn.ModuleList(Block(*s, norm) for s in enc)
        self.dec = nn.ModuleList(Block(*s, norm) for s in dec)
        # DCGAN init as trainer/src/train.rs: conv weights N(0, .02), norm scales N(1, .02),
        # biases 0.
        for name, p in self.named_parameters():
            with torch.no_grad():
                if name.endswith("conv.weight"):
                    p.normal_(0.0, 0.02)
                elif name.endswith("ln.weight") or name.endswith("bn.weight"):
                    p.normal_(1.0, 0.02)
                else:
                    p.zero_()

    def forward(self, x):
        for b in self.enc:
            x = b(x)
        for b in self.dec:
            x = b(x)
        return x


def dist(a, b):
    """Per-sample mean absolute difference over (C, H, W): a [B] tensor."""
    return (a - b).abs().flatten(1).mean(1)


def train_step(f, frozen, opt, x):
    z = torch.randn_like(x)
    fx = f(x)
    fz = f(z)
    f_z = fz.detach()
    ff_z = f(f_z)
    f_fz = functional_call(f, frozen, (fz,))  # same weights, gradient only through fz

    rec = dist(fx, x)
    idem = dist(f_fz, fz).mean()
    tight = -dist(ff_z, f_z)
    scale = 1.5 * rec
    tight = (torch.tanh(tight / scale) * scale).mean()
    loss = 20 * rec.mean() + 20 * idem + 2.5 * tight

    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--norm", choices=["layer", "batch"], default="layer")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--image-size", type=int, choices=[28, 32, 64], default=28)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    f = Ign(args.channels, args.width, args.norm, args.image_size)
    f.train()
    params = sum(p.numel() for p in f.parameters())
    if (args.width, args.channels, args.norm, args.image_size) == (32, 1, "layer", 28):
        assert params == 739_297, params

    # The frozen f: detached views share storage with f's parameters, so they follow Adam's
    # in-place updates without a copy per step. BN running statistics are copied once (as
    # trainer/src/train.rs frozen_copy does), so the frozen pass does not update f's.
    frozen = {n: p.detach() for n, p in f.named_parameters()}
    frozen.update({n: b.clone() for n, b in f.named_buffers()})
    opt = torch.optim.Adam(f.parameters(), lr=1e-4, betas=(0.5, 0.999))

    x = torch.rand(args.batch, args.channels, args.image_size, args.image_size) * 2 - 1
    for _ in range(2):
        train_step(f, frozen, opt, x)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        train_step(f, frozen, opt, x)
        times.append(time.perf_counter() - t)
    step_s = statistics.median(times)

    f.eval()  # as an exported batch-1 model: BatchNorm uses its running statistics
    fwd = []
    with torch.no_grad():
        x1 = x[:1].contiguous()
        for i in range(30):
            t = time.perf_counter()
            f(x1)
            if i >= 5:
                fwd.append((time.perf_counter() - t) * 1e3)

    print(json.dumps({
        "runtime": "pytorch",
        "version": torch.__version__,
        "image_size": args.image_size,
        "channels": args.channels,
        "width": args.width,
        "batch": args.batch,
        "norm": args.norm,
        "params": params,
        "threads": args.threads,
        "step_s": round(step_s, 6),
        "images_per_s": round(args.batch / step_s, 2),
        "forward_b1_ms": round(statistics.median(fwd), 4),
    }))


if __name__ == "__main__":
    main()
