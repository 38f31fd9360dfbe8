#!/usr/bin/env python3
"""PyTorch scaled_dot_product_attention on the rows of jetforge_bench_attention, same FLOP counts, median of 20
CUDA-event-timed runs, for the side-by-side ratio. Runs on the GPU machine (PyTorch).

The first columns are the backend PyTorch picks by default; then each of its flash, cuDNN and memory-efficient
backends held on its own ("-" where it refuses the problem), and which of them the default one is (the one whose
output it repeats bit for bit).

--errors DIR: for the problems `jetforge_bench_attention --dump DIR` wrote (inputs, our outputs and gradients), the
max error of ours and of each SDPA backend (BF16, the same inputs) against an FP64 reference, each as a fraction of
the reference's largest magnitude, as the C++ tests measure it, and the RMS error relative to the reference's."""
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from torch_timing import median_ms

BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION}


def run(backend, fn):
    """fn() under one backend (None: PyTorch's choice); None where that backend refuses the problem."""
    if backend is None:
        return fn()
    try:
        with sdpa_kernel(BACKENDS[backend]):
            return fn()
    except RuntimeError:
        return None


def outputs(q, k, v, d_o, causal):
    """O, dQ, dK, dV of SDPA from BF16 leaves q, k, v (fresh autograd graph)."""
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return (o.detach(), *torch.autograd.grad(o, (q, k, v), d_o))


def default_backend(results):
    """The backend whose output O the default one repeats bit for bit, '?' if none (O only: a backward that sums with
    atomics does not repeat its own bits)."""
    for name in BACKENDS:
        if results[name] is not None and torch.equal(results[None][0], results[name][0]):
            return name
    return "?"


def timings():
    batch, causal = 8, True
    head = f"{'batch':6} {'heads':6} {'T':6} {'head_dim':9} {'causal':7} | {'fwd us':>10} {'fwd TF/s':>10} | {'bwd us':>10} {'bwd TF/s':>10} | default"
    print(head + "".join(f" | {name + ' fwd':>13} {name + ' bwd':>13}" for name in BACKENDS) + "   (TF/s)")
    for head_dim in (64, 128):
        for heads in (12, 16):
            for tokens in (1024, 2048, 4096):
                q, k, v = (torch.randn(batch, heads, tokens, head_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
                d_o = torch.randn(batch, heads, tokens, head_dim, device="cuda", dtype=torch.bfloat16)
                flops = 4.0 * batch * heads * tokens * tokens * head_dim * (0.5 if causal else 1.0)

                def measure():
                    o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                    fwd = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                    bwd = median_ms(lambda: torch.autograd.grad(o, (q, k, v), d_o, retain_graph=True))
                    return fwd, bwd

                times = {name: run(name, measure) for name in [None, *BACKENDS]}
                which = default_backend({name: run(name, lambda: outputs(q, k, v, d_o, causal)) for name in [None, *BACKENDS]})
                fwd, bwd = times[None]
                line = (f"{batch:<6} {heads:<6} {tokens:<6} {head_dim:<9} {'yes' if causal else 'no':7} | {fwd * 1e3:10.1f} {flops / (fwd * 1e-3) / 1e12:10.1f} |"
                        f" {bwd * 1e3:10.1f} {2.5 * flops / (bwd * 1e-3) / 1e12:10.1f} | {which:7}")
                for name in BACKENDS:
                    t = times[name]
                    line += " | " + (f"{flops / (t[0] * 1e-3) / 1e12:13.1f} {2.5 * flops / (t[1] * 1e-3) / 1e12:13.1f}" if t else f"{'-':>13} {'-':>13}")
                print(line)


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
    names = ["default", *BACKENDS]
    print(f"{'case':8} {'tensor':6} | max error: {'jetforge':>10}" + "".join(f" {n:>10}" for n in names) + f" | rms: {'jetforge':>10}" +
          "".join(f" {n:>10}" for n in names))
    tally = {n: [0, 0, 0.0] for n in names}  # ours no worse, compared, worst ratio ours / theirs
    for line in open(f"{directory}/cases.txt"):
        name, batch, heads, tokens, head_dim, causal = line.split()
        shape = (int(batch), int(heads), int(tokens), int(head_dim))
        causal = causal == "1"
        t = {x: load(f"{directory}/{name}_{x}.bf16", shape) for x in ("q", "k", "v", "do", "o", "dq", "dk", "dv")}
        want = reference(t["q"], t["k"], t["v"], t["do"], causal)
        results = {n: run(n, lambda: outputs(t["q"], t["k"], t["v"], t["do"], causal)) for n in [None, *BACKENDS]}
        print(f"{name}: PyTorch's default backend here is {default_backend(results)}")
        results["default"] = results.pop(None)
        for i, tensor in enumerate(("o", "dq", "dk", "dv")):
            ours = rel(t[tensor], want[i])
            theirs = {n: rel(results[n][i], want[i]) for n in names if results[n] is not None}
            for n, e in theirs.items():
                tally[n][0] += ours <= e
                tally[n][1] += 1
                tally[n][2] = max(tally[n][2], ours / e)
            fmt = lambda d, n: f" {d[n]:10.3e}" if n in d else f" {'-':>10}"
            print(f"{name:8} {tensor:6} | {'':11}{ours:10.3e}" + "".join(fmt(theirs, n) for n in names) + f" | {'':5}{rms(t[tensor], want[i]):10.3e}" +
                  "".join(fmt({n: rms(results[n][i], want[i]) for n in theirs}, n) for n in names))
    for n in names:
        no_worse, cases, worst = tally[n]
        print(f"max error no worse than SDPA {n}: {no_worse} of {cases}; worst ratio ours / SDPA {n}: {worst:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--errors":
        errors(sys.argv[2])
    elif len(sys.argv) == 1:
        timings()
    else:
        sys.exit("usage: sdpa.py [--errors DIR]")
