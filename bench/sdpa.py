#!/usr/bin/env python3
"""PyTorch scaled_dot_product_attention (its flash/cuDNN backend) on the rows of jetforge_bench_attention, same
FLOP counts, median of 20 CUDA-event-timed runs, for the side-by-side ratio. Runs on the GPU machine (PyTorch)."""
import torch
import torch.nn.functional as F

from torch_timing import median_ms


def main():
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


if __name__ == "__main__":
    main()
