#!/usr/bin/env python3
"""What it would take for the attention backward's max errors to be no worse than PyTorch's default SDPA backend
(cuDNN on the H100) on every gradient tensor (issue 7). Runs on the GPU machine (PyTorch).

For `--draws` random causal problems per head dimension (B = 1, 4 heads, T = 1024, head_dim 64 and 128, N(0, 1)
inputs in BF16, as `jetforge_bench_attention --dump` draws them), the max error of dQ, dK and dV against an FP64
reference (as a fraction of the reference's largest magnitude, as bench/sdpa.py measures it) of SDPA's cuDNN and
flash backends and of emulations of a FlashAttention-2 backward (FP32 products of the exact BF16 inputs, BF16
outputs) that differ only in two roundings:
  - dS = P (dP - delta) rounded to BF16 (ours and FlashAttention-2's), FP16, or not at all (FP32) before dQ = dS K and
    dK = dS^T Q;
  - delta = rowsum(dO * O) from the BF16 output O (ours), from the forward's FP32 O (P rounded to BF16 in P V), or
    rowsum(P * dP) from the backward's own P and dP.
Prints, per variant, on how many tensors its max error is no worse than cuDNN's and the worst ratio."""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def causal_mask(t):
    return torch.ones(t, t, dtype=torch.bool, device="cuda").triu(1)


def reference(q, k, v, d_o):
    q, k, v = (x.double().requires_grad_() for x in (q, k, v))
    s = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(causal_mask(q.shape[-2]), float("-inf"))
    return torch.autograd.grad(torch.softmax(s, -1) @ v, (q, k, v), d_o.double())


def sdpa(q, k, v, d_o, backend):
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    with sdpa_kernel(backend):
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return o.detach(), torch.autograd.grad(o, (q, k, v), d_o)


def scores(q, k):
    s = q.float() @ k.float().transpose(-1, -2) * q.shape[-1] ** -0.5
    return s.masked_fill(causal_mask(q.shape[-2]), float("-inf"))


def forward_o32(q, k, v):
    """O before its BF16 rounding, as our forward computes it: unnormalized P rounded to BF16 in P V, FP32 row sums."""
    s = scores(q, k)
    p = torch.exp(s - s.amax(-1, keepdim=True))
    return (p.bfloat16().float() @ v.float()) / p.sum(-1, keepdim=True)


def emulated(q, k, v, d_o, o, ds_dtype, delta_from):
    """dQ, dK, dV with dS rounded to ds_dtype and delta from the BF16 O ("o"), the FP32 O ("o32") or P dP ("p_dp")."""
    s = scores(q, k)
    p = torch.exp(s - torch.logsumexp(s, -1, keepdim=True))
    dp = d_o.float() @ v.float().transpose(-1, -2)
    if delta_from == "p_dp":
        delta = (p * dp).sum(-1, keepdim=True)
    else:
        delta = (d_o.float() * (o.float() if delta_from == "o" else forward_o32(q, k, v))).sum(-1, keepdim=True)
    ds = (p * (dp - delta)).to(ds_dtype).float()
    scale = q.shape[-1] ** -0.5
    return ((ds @ k.float() * scale).bfloat16(), (ds.transpose(-1, -2) @ q.float() * scale).bfloat16(),
            (p.bfloat16().float().transpose(-1, -2) @ d_o.float()).bfloat16())


VARIANTS = {  # name: (dS rounding, delta from)
    "ours (dS BF16, delta from BF16 O)": (torch.bfloat16, "o"),
    "dS FP16": (torch.float16, "o"),
    "dS FP32": (torch.float32, "o"),
    "dS FP16, delta from FP32 O": (torch.float16, "o32"),
    "dS BF16, delta = rowsum(P dP)": (torch.bfloat16, "p_dp"),
    "dS FP16, delta = rowsum(P dP)": (torch.float16, "p_dp"),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=20, help="random problems per head dimension (default 20)")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    rel = lambda got, want: ((got.double() - want).abs().max() / want.abs().max()).item()
    tally = {name: [0, 0, 0.0] for name in ["SDPA flash", *VARIANTS]}  # no worse than cuDNN, compared, worst ratio
    for head_dim in (64, 128):
        for draw in range(args.draws):
            g = torch.Generator(device="cuda").manual_seed(1 + 10 * draw)
            q, k, v, d_o = (torch.randn(1, 4, 1024, head_dim, device="cuda", generator=g).bfloat16() for _ in range(4))
            want = reference(q, k, v, d_o)
            _, cudnn = sdpa(q, k, v, d_o, SDPBackend.CUDNN_ATTENTION)
            o, flash = sdpa(q, k, v, d_o, SDPBackend.FLASH_ATTENTION)
            grads = {"SDPA flash": flash, **{name: emulated(q, k, v, d_o, o, *how) for name, how in VARIANTS.items()}}
            for i in range(3):
                theirs = rel(cudnn[i], want[i])
                for name, got in grads.items():
                    ours = rel(got[i], want[i])
                    t = tally[name]
                    t[0] += ours <= theirs
                    t[1] += 1
                    t[2] = max(t[2], ours / theirs)
    print(f"dQ, dK, dV of {args.draws} causal draws x head_dim 64 and 128 (B = 1, 4 heads, T = 1024), max error vs FP64:")
    for name, (no_worse, compared, worst) in tally.items():
        print(f"  {name:34} no worse than SDPA cuDNN on {no_worse:3} of {compared}; worst ratio {worst:.2f}")


if __name__ == "__main__":
    main()
