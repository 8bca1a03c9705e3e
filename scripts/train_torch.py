#!/usr/bin/env python3
"""The PyTorch reference for `scripts/bench-train.sh`: the same model shape and training recipe as
`alibi-explorer train` (pre-LN GPT, ALiBi as a float mask through scaled_dot_product_attention,
tanh GELU, tied embeddings scaled by sqrt(d_model), AdamW with decay on matrices only, global-norm
clipping, warm-up then cosine), on the token ids our trainer cached (`train-tokens.bin`, little-endian
u32), in f32 on the CPU. Prints one JSON line: tokens/s of the timed steps, wall time of the whole
process and its peak resident memory.

    pip install -r scripts/requirements-train-bench.txt
    python scripts/train_torch.py --tokens OUT/train-tokens.bin --d-model 256 --layers 6 ...
"""

import argparse
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

START = time.time()


def alibi_slopes(heads):
    # Press et al.: geometric slopes, interleaved for non-powers of two.
    def pow2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(heads).is_integer():
        return pow2(heads)
    closest = 2 ** math.floor(math.log2(heads))
    return pow2(closest) + alibi_slopes(2 * closest)[0::2][: heads - closest]


class Block(nn.Module):
    def __init__(self, d, heads, d_ff):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.up = nn.Linear(d, d_ff)
        self.down = nn.Linear(d_ff, d)

    def forward(self, x, bias):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = x + self.out(y.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, d, layers, heads, d_ff, train_len):
        super().__init__()
        self.scale = math.sqrt(d)
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, heads, d_ff) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        i = torch.arange(train_len)
        dist = (i[None, :] - i[:, None]).clamp(max=0).float()  # j - i, 0 in the future
        slopes = torch.tensor(alibi_slopes(heads))
        bias = slopes[:, None, None] * dist[None]
        bias = bias.masked_fill(i[None, :] > i[:, None], float("-inf"))
        self.register_buffer("bias", bias[None], persistent=False)  # (1, heads, t, t)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("out.weight", "down.weight")) else 0.02
                nn.init.normal_(p, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, x, y):
        h = self.emb(x) * self.scale
        for blk in self.blocks:
            h = blk(h, self.bias)
        logits = self.ln_f(h) @ self.emb.weight.t()
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--train-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warm-steps", type=int, default=2, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1234)
    ids = torch.frombuffer(bytearray(open(a.tokens, "rb").read()), dtype=torch.int32).long()
    model = GPT(a.vocab_size, a.d_model, a.layers, a.heads, 4 * a.d_model, a.train_len)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
        lr=a.lr, betas=(0.9, 0.95), eps=1e-8,
    )
    total = a.warm_steps + a.steps
    warmup = max(1, total // 10)

    def lr_at(step):
        if step < warmup:
            return a.lr * (step + 1) / warmup
        p = min(1.0, (step - warmup) / max(1, total - warmup))
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    window = a.train_len + 1
    losses = []
    t0 = None
    for step in range(total):
        if step == a.warm_steps:
            t0 = time.time()
        off = torch.randint(0, len(ids) - window, (a.batch,))
        batch = torch.stack([ids[o : o + window] for o in off.tolist()])
        x, y = batch[:, :-1], batch[:, 1:]
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    timed = time.time() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "trainer": "pytorch " + torch.__version__,
        "tokens_per_s": a.steps * a.batch * a.train_len / timed,
        "wall_s": time.time() - START,
        "peak_rss_mib": peak_mib,
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
