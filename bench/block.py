#!/usr/bin/env python3
"""PyTorch's BF16 GPT-2 block (pre-LayerNorm, causal SDPA attention, tanh-GELU MLP) under autocast and
torch.compile, forward + backward, on the shapes of jetforge_bench_block: B = 8, T = 1024, d in {768, 1024, 2048, 4096},
median of 10 CUDA-event-timed steps after warm-up, and the peak activation memory of a step."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_timing import median_ms


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.heads = d // 64
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.fc_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, 64).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


def main():
    batch, tokens = 8, 1024
    print(f"{'batch':6} {'T':6} {'d':6} | {'block ms':>12} | {'peak MiB':>12}")
    for d in (768, 1024, 2048, 4096):
        block = torch.compile(Block(d).cuda())
        x = torch.randn(batch, tokens, d, device="cuda", requires_grad=True)

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y = block(x)
            y.float().square().mean().backward()

        step()  # compile
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t = median_ms(step, warmup=2, reps=10)
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
        print(f"{batch:<6} {tokens:<6} {d:<6} | {t:12.2f} | {peak:12.1f}")


if __name__ == "__main__":
    main()
