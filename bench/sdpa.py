#!/usr/bin/env python3
"""PyTorch scaled_dot_product_attention (its flash/cuDNN backend) on the rows of jetforge_bench_attention, same
FLOP counts, median of 20 CUDA-event-timed runs, for the side-by-side ratio. Runs on the GPU machine (PyTorch).

--errors DIR: for the problems `jetforge_bench_attention --dump DIR` wrote (inputs, our outputs and gradients), the
max error of ours and of SDPA (BF16, the same inputs) against an FP64 reference, each as a fraction of the
reference's largest magnitude, as the C++ tests measure it; beside them the RMS error relative to the reference's, and
both for SDPA held to its flash backend."""
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from torch_timing import median_ms


def timings():
    batch, causal = 8, True
    print(f"{'batch':6} {'heads':6} {'T':6} {'head_dim':9} {'causal':7} | {'fwd us':>10} {'fwd TF/s':>10} | {'bwd us':>10} {'bwd TF/s':>10}")
    for head_dim in (64, 128):
        for heads in (12, 16):
            for tokens in (1024, 2048, 4096):
                q, k, v = (torch.randn(batch, heads, tokens, head_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
                d_o = torch.randn(batch, heads, tokens, head_dim, device="cuda", dtype=torch.bfloat16)
                o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                fwd = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                bwd = median_ms(lambda: torch.autograd.grad(o, (q, k, v), d_o, retain_graph=True))
                flops = 4.0 * batch * heads * tokens * tokens * head_dim * (0.5 if causal else 1.0)
                print(f"{batch:<6} {heads:<6} {tokens:<6} {head_dim:<9} {'yes' if causal else 'no':7} | {fwd * 1e3:10.1f} {flops / (fwd * 1e-3) / 1e12:10.1f} |"
                      f" {bwd * 1e3:10.1f} {2.5 * flops / (bwd * 1e-3) / 1e12:10.1f}")


def load(path, shape):
    raw = open(path, "rb").read()
    return torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).reshape(shape).cuda()


def reference(q, k, v, d_o, causal):
    """O and the gradients in FP64 from the BF16 inputs (explicit softmax; autograd for the backward)."""
    q, k, v = (x.double().requires_grad_() for x in (q, k, v))
    s = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if causal:
        t = q.shape[-2]
        s = s.masked_fill(torch.ones(t, t, dtype=torch.bool, device=s.device).triu(1), float("-inf"))
    o = torch.softmax(s, dim=-1) @ v
    return (o.detach(), *torch.autograd.grad(o, (q, k, v), d_o.double()))


def errors(directory):
    rel = lambda got, want: ((got.double() - want).abs().max() / want.abs().max()).item()
    rms = lambda got, want: ((got.double() - want).norm() / want.norm()).item()
    print(f"{'case':8} {'tensor':6} | {'jetforge':>10} {'SDPA':>10} | ours no worse | rms: {'jetforge':>10} {'SDPA':>10} |"
          f" SDPA's flash backend: {'max':>10} {'rms':>10}")
    worst, no_worse, cases = 0.0, 0, 0
    for line in open(f"{directory}/cases.txt"):
        name, batch, heads, tokens, head_dim, causal = line.split()
        shape = (int(batch), int(heads), int(tokens), int(head_dim))
        causal = causal == "1"
        t = {x: load(f"{directory}/{name}_{x}.bf16", shape) for x in ("q", "k", "v", "do", "o", "dq", "dk", "dv")}
        want = reference(t["q"], t["k"], t["v"], t["do"], causal)
        q, k, v = (t[x].clone().requires_grad_() for x in ("q", "k", "v"))
        def sdpa_outputs():
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            return (o.detach(), *torch.autograd.grad(o, (q, k, v), t["do"]))
        sdpa = sdpa_outputs()  # the backend PyTorch picks
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            flash = sdpa_outputs()
        if not all(torch.equal(x, y) for x, y in zip(sdpa, flash)):
            print(f"{name}: PyTorch's default SDPA backend is not the flash one here")
        for i, tensor in enumerate(("o", "dq", "dk", "dv")):
            ours, theirs = rel(t[tensor], want[i]), rel(sdpa[i], want[i])
            worst, no_worse, cases = max(worst, ours / theirs), no_worse + (ours <= theirs), cases + 1
            print(f"{name:8} {tensor:6} | {ours:10.3e} {theirs:10.3e} | {'yes' if ours <= theirs else 'NO '} ({ours / theirs:.2f}x)  |"
                  f"      {rms(t[tensor], want[i]):10.3e} {rms(sdpa[i], want[i]):10.3e} |"
                  f"                       {rel(flash[i], want[i]):10.3e} {rms(flash[i], want[i]):10.3e}")
    print(f"max error no worse than SDPA's: {no_worse} of {cases}; worst ratio ours / SDPA: {worst:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--errors":
        errors(sys.argv[2])
    elif len(sys.argv) == 1:
        timings()
    else:
        sys.exit("usage: sdpa.py [--errors DIR]")
