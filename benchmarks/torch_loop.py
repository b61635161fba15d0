"""hevar's measurement as a PyTorch CPU user would script it: one configuration at a time, autograd.

    python benchmarks/torch_loop.py [--quick] [--depth L] [--width N] [--batch B] [--seeds S]
                                    [--sigma-w2 LIST] [--act relu|tanh] [--dtype float32|float64]

The defaults are those of ``hevar sweep --act relu`` (depth 50, width 256, batch 128, 8 seeds,
σ_w²·N = 0.5, 1, …, 4, σ_b² = 0, float64). For every seed and σ_w²·N it draws the weights, runs the
forward pass with ``retain_grad`` on every zˡ, back-propagates a random readout and reduces the
same per-layer statistics hevar reports (qˡ, q̃ˡ, the per-input weight-gradient product and
‖∂J/∂Wˡ‖²). PyTorch runs with its default threads. It imports nothing from hevar, so that timed
as a whole process (``benchmarks/process.py``) it pays only its own start-up.

PyTorch is not a hevar dependency: without it this script says so and exits 0.
"""

from __future__ import annotations

import argparse
import math
import sys

torch = None


def measure(act_name: str, L: int, N: int, B: int, dtype: str, sigma_w2_n: float, seed: int = 0):
    """One configuration: per-layer q, q̃, the per-input gradient product and ‖∂J/∂W‖² (NumPy arrays)."""
    tdt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    phi = {"relu": torch.relu, "tanh": torch.tanh}[act_name]
    gen = torch.Generator().manual_seed(seed)
    std = math.sqrt(sigma_w2_n / N)
    Ws = [(std * torch.randn(N, N, generator=gen, dtype=tdt)).requires_grad_() for _ in range(L)]
    x = torch.randn(N, B, generator=gen, dtype=tdt)
    g = torch.randn(N, B, generator=gen, dtype=tdt)
    h, zs, hs = x, [], [x]
    for W in Ws:
        z = W @ h
        z.retain_grad()
        zs.append(z)
        h = phi(z)
        hs.append(h)
    (g * zs[-1]).sum().backward()
    with torch.no_grad():
        q = torch.stack([z.square().mean() for z in zs])
        q_tilde = torch.stack([z.grad.square().mean() for z in zs])
        per_input = torch.stack([(z.grad.square().sum(0) * a.square().sum(0)).mean() for z, a in zip(zs, hs)])
        w_grad = torch.stack([W.grad.square().sum() for W in Ws])
    return q.numpy(), q_tilde.numpy(), per_input.numpy(), w_grad.numpy()


def load() -> bool:
    """Import torch into this module; False where it is not installed."""
    global torch
    try:
        import torch as _torch
    except ImportError:
        return False
    torch = _torch
    return True


def sweep(act: str, L: int, N: int, B: int, seeds: int, sigma_w2: list[float], dtype: str) -> int:
    """Every (seed, σ_w²·N) configuration of a sweep, one after the other; returns their number."""
    for seed in range(seeds):
        for s in sigma_w2:
            measure(act, L, N, B, dtype, s, seed=seed)
    return seeds * len(sigma_w2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the tiny sweep of process.py --quick")
    parser.add_argument("--act", default="relu", choices=("relu", "tanh"))
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--sigma-w2", default="0.5,1,1.5,2,2.5,3,3.5,4", help="σ_w²·N values, comma-separated")
    parser.add_argument("--dtype", default="float64", choices=("float32", "float64"))
    args = parser.parse_args(argv)
    if args.quick:
        args.depth, args.width, args.batch, args.seeds = 6, 32, 128, 2
    if not load():
        print("torch is not installed: nothing to time", file=sys.stderr)
        return 0
    n = sweep(args.act, args.depth, args.width, args.batch, args.seeds,
              [float(v) for v in args.sigma_w2.split(",")], args.dtype)
    print(f"{n} configurations, torch {torch.__version__}, {torch.get_num_threads()} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
