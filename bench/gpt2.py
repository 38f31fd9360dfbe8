#!/usr/bin/env python3
"""PyTorch's GPT-2 124M training step (BF16 autocast, torch.compile, fused AdamW, global-norm clipping) at batch
8 x 1024 tokens: tokens/s and peak memory, for the side-by-side comparison with jetforge_bench_gpt2."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_timing import median_ms


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.fc_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class Gpt2(nn.Module):
    def __init__(self, layers=12, d=768, heads=12, tokens=1024, vocab=50304):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(tokens, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def main():
    batch, tokens = 8, 1024
    model = Gpt2().cuda()
    step_model = torch.compile(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=True)
    idx = torch.randint(0, 50257, (batch, tokens), device="cuda")
    targets = torch.randint(0, 50257, (batch, tokens), device="cuda")

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_model(idx, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # compile
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = median_ms(step, warmup=2, reps=10)
    print(f"pytorch bf16: {batch * tokens} tokens/step, {t:.1f} ms/step, {batch * tokens / t * 1e3:.0f} tokens/s, "
          f"peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
