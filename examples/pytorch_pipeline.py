#!/usr/bin/env python3
"""A LLaVA-shaped pipeline in PyTorch that prunes its visual tokens with the tokenprune Python package.

    vision encoder   torchvision's ViT-B/16 architecture (224 px: [CLS] + 196 patch tokens, 12 heads)
    attention        captured from the layer that feeds the projector (LLaVA's vision_feature_layer = -2):
                     the maps, and the same layer's queries and keys (what a fused-attention engine has)
    projector        a linear layer to the LLM width
    decoder          a stack of LLaMA-like layers (RMSNorm, RoPE attention, SwiGLU MLP) prefilling
                     [text tokens + kept visual tokens] and keeping its KV cache

It prunes with G-Prune (projected features) and FoPru (attention maps, and queries/keys without maps) at ratios
1.0, 0.5, 0.25 and 0.11, and prints the prefill time, the pruner's own time and the KV-cache bytes for each.

ALL WEIGHTS ARE RANDOM (seeded; nothing can be downloaded here). This measures speed and plumbing, not accuracy:
which tokens are kept says nothing about answer quality with random weights.

    python3 examples/pytorch_pipeline.py             # d = 2048, 8 decoder layers (about 1.7 GB of fp32 weights)
    python3 examples/pytorch_pipeline.py --small     # d = 256, 2 layers: the CI run
"""

import argparse
import math
import statistics
import time

import numpy as np
import torch
from torch import nn

import tokenprune

try:
    from torchvision.models import vit_b_16
except ImportError as e:  # pragma: no cover
    raise SystemExit("needs torchvision (Debian: apt-get install python3-torchvision)") from e


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, positions):
    """Rotary embedding over the last dimension of x [heads, L, hd] at integer positions [L]."""
    hd = x.shape[-1]
    freq = 1.0 / (10000 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    angle = positions.to(torch.float32)[:, None] * freq[None, :]
    cos, sin = angle.cos(), angle.sin()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class DecoderLayer(nn.Module):
    def __init__(self, d, heads, mlp):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = RMSNorm(d), RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.gate_up = nn.Linear(d, 2 * mlp, bias=False)
        self.down = nn.Linear(mlp, d, bias=False)

    def forward(self, x, positions):
        L, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(L, 3, self.heads, d // self.heads).permute(1, 2, 0, 3)
        q, k = rope(q, positions), rope(k, positions)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True) if hasattr(
            torch.nn.functional, "scaled_dot_product_attention") else self._attention(q, k, v)
        x = x + self.out(a.transpose(0, 1).reshape(L, d))
        g, u = self.gate_up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(torch.nn.functional.silu(g) * u), (k, v)

    @staticmethod
    def _attention(q, k, v):
        s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        mask = torch.ones(s.shape[-2:], dtype=torch.bool).triu(1)
        return s.masked_fill(mask, float("-inf")).softmax(-1) @ v


class Pipeline:
    def __init__(self, d, layers, text_tokens, seed):
        torch.manual_seed(seed)
        self.vit = vit_b_16(weights=None).eval()
        self.projector = nn.Linear(768, d)
        heads = max(1, d // 128)
        self.decoder = nn.ModuleList(DecoderLayer(d, heads, int(d * 2.6875) // 64 * 64) for _ in range(layers))
        self.text = torch.randn(text_tokens, d) * 0.02  # stand-in for the embedded prompt
        self.d = d

    @torch.no_grad()
    def encode(self, image):
        """Patch features of layer -2 (projected), that layer's attention maps and its queries and keys."""
        vit = self.vit
        x = vit._process_input(image)
        x = torch.cat([vit.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = vit.encoder.dropout(x + vit.encoder.pos_embedding)
        layers = vit.encoder.layers
        for layer in layers[:-2]:
            x = layer(x)
        block = layers[-2]
        h = block.ln_1(x)
        attn = block.self_attention
        maps = attn(h, h, h, need_weights=True, average_attn_weights=False)[1][0]  # [heads, 197, 197]
        heads, hd = attn.num_heads, attn.embed_dim // attn.num_heads
        wq, wk, _ = attn.in_proj_weight.chunk(3)
        bq, bk, _ = attn.in_proj_bias.chunk(3)
        # [197, heads * hd] -> [heads, 197, hd] as strided views (no copy): tokenprune reads them in place
        q = (h[0] @ wq.T + bq).view(-1, heads, hd).transpose(0, 1)
        k = (h[0] @ wk.T + bk).view(-1, heads, hd).transpose(0, 1)
        x = block(x)  # the output of layer -2: LLaVA's image features
        features = self.projector(x[0, 1:])  # CLS removed, [196, d]
        return features, maps, q, k

    @torch.no_grad()
    def prefill(self, visual):
        x = torch.cat([visual, self.text], dim=0)
        positions = torch.arange(x.shape[0])
        kv_bytes = 0
        for layer in self.decoder:
            x, (k, v) = layer(x, positions)
            kv_bytes += k.numel() * k.element_size() + v.numel() * v.element_size()
        return x, kv_bytes


def timed(fn, repeat):
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="d = 256, 2 layers (CI)")
    parser.add_argument("--d", type=int, help="decoder width (default 2048; --small: 256)")
    parser.add_argument("--layers", type=int, help="decoder layers (default 8; --small: 2)")
    parser.add_argument("--text-tokens", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3, help="median of N timed runs (default 3; --small: 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args()
    d = args.d or (256 if args.small else 2048)
    layers = args.layers or (2 if args.small else 8)
    repeat = 1 if args.small and args.repeat == 3 else args.repeat

    pipe = Pipeline(d, layers, args.text_tokens, args.seed)
    image = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(args.seed))
    features, maps, q, k = pipe.encode(image)
    n = features.shape[0]
    print(f"random weights (seed {args.seed}): speed and plumbing only, not accuracy")
    print(f"vision: ViT-B/16, {n} patches; decoder: d {d}, {layers} layers, {args.text_tokens} text tokens; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; tokenprune {tokenprune.__version__} "
          f"({tokenprune.active_isa()})")

    patch_maps = maps[:, 1:, 1:]  # CLS dropped: a view
    methods = [
        ("gprune", "features", tokenprune.GPrune(),
         lambda p, r: p.prune(features=features, ratio=r)),
        ("fopru-rank", "maps", tokenprune.FoPru(),
         lambda p, r: p.prune(attention=patch_maps, ratio=r)),
        ("fopru-rank", "queries/keys", tokenprune.FoPru(),
         lambda p, r: p.prune(queries=q, keys=k, skip_tokens=1, ratio=r)),
    ]
    rows = []
    _, base_ms = timed(lambda: pipe.prefill(features), repeat)
    for name, source, pruner, run in methods:
        for ratio in (1.0, 0.5, 0.25, 0.11):
            kept, prune_s = timed(lambda: run(pruner, ratio), repeat)
            assert kept.dtype == np.int64 and np.all(np.diff(kept) > 0)
            visual = tokenprune.gather_rows(features, kept)  # [k, d] in the features' dtype
            (_, kv_bytes), prefill_s = timed(lambda: pipe.prefill(visual), repeat)
            rows.append((name, source, ratio, len(kept), prefill_s * 1e3, prune_s * 1e3, kv_bytes,
                         100.0 * prune_s / prefill_s))
    del base_ms

    header = ("method", "input", "ratio", "visual tokens", "prefill ms", "pruner ms", "KV cache MiB", "pruner / prefill")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]} | {r[4]:.1f} | {r[5]:.2f} | {r[6] / 2**20:.2f} | {r[7]:.2f}% |")
    else:
        print(f"{header[0]:<11} {header[1]:<13} {header[2]:>5} {header[3]:>13} {header[4]:>11} {header[5]:>10} "
              f"{header[6]:>13} {header[7]:>16}")
        for r in rows:
            print(f"{r[0]:<11} {r[1]:<13} {r[2]:>5.2f} {r[3]:>13} {r[4]:>11.1f} {r[5]:>10.2f} {r[6] / 2**20:>13.2f} "
                  f"{r[7]:>15.2f}%")


if __name__ == "__main__":
    main()
