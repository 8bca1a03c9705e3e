#!/usr/bin/env python3
"""Golden-test fixtures for alibi-explorer, produced with Hugging Face transformers (CPU, float32).

Modes
-----
  python scripts/make_fixtures.py [--out tests/fixtures] [--cases bloom-h4,mpt-h4,...]
      Writes one folder per case: config.json, model.safetensors, expected.json.

  python scripts/make_fixtures.py --shape bloom-560m --out DIR
      Writes a randomly initialised model with bloom-560m's exact architecture
      (config.json + model.safetensors, ~2.2 GB float32, no expected.json) for benchmarks.
      --shape bloom-tiny writes a few-MB model of the same family to smoke-test the benchmark.

  python scripts/make_fixtures.py --bench-transformers DIR --lengths 512,2048
      Loads DIR with transformers and prints one JSON line per length with forward
      tokens/s and peak RSS (torch.set_num_threads(2)).

  python scripts/make_fixtures.py --falcon-report
      Prints how transformers' Falcon eager and sdpa attention compare with the original
      Falcon-RW formula (the measurement behind the falcon-* fixtures).

See scripts/FIXTURES.md for what the fixtures contain and for notes on what the
transformers reference implementations do (slope ordering, fused QKV layouts, which
MPT config options are honoured).

Notes on transformers' MPT (checked against transformers 5.24.0, models/mpt/modeling_mpt.py):
  * alibi_bias_max is NOT honoured: MptModel.forward calls
    self.build_mpt_alibi_tensor(self.num_heads, self.config.max_seq_len, device=...) without
    passing attn_config.alibi_bias_max, so the default 8 is always used. (attn_config.alibi is
    also ignored: the alibi bias is always added.)
  * clip_qkv IS honoured: MptAttention.forward clamps the fused Wqkv output to
    [-clip_qkv, clip_qkv] before splitting into Q, K, V.
  * qk_ln is NOT honoured (never read by the modeling code; no q/k LayerNorm parameters exist).
  * softmax_scale IS honoured (default 1/sqrt(head_dim)).
  * LayerNorms (norm_1, norm_2, norm_f) have no bias (bias set to None); no_bias is ignored and all
    Linear layers are bias-free; expansion_ratio is ignored (MLP width is hard-coded 4*d_model);
    learned_pos_emb / logit_scale / attn_type are ignored.
"""

import argparse
import json
import math
import os
import resource
import sys
import time

T = 24  # tokens per fixture sequence

# name -> (family, seed, config kwargs)
CASES = {
    "bloom-h4": ("bloom", 1004, dict(vocab_size=96, hidden_size=64, n_layer=2, n_head=4, layer_norm_epsilon=1e-5)),
    "bloom-h6": ("bloom", 1006, dict(vocab_size=96, hidden_size=72, n_layer=2, n_head=6, layer_norm_epsilon=1e-5)),
    "mpt-h4": ("mpt", 2004, dict(d_model=64, n_heads=4, n_layers=2, vocab_size=96, max_seq_len=64, expansion_ratio=4,
                                 attn_config=dict(alibi=True, alibi_bias_max=8))),
    "mpt-h6": ("mpt", 2006, dict(d_model=72, n_heads=6, n_layers=2, vocab_size=96, max_seq_len=64, expansion_ratio=4,
                                 attn_config=dict(alibi=True, alibi_bias_max=8))),
    "mpt-h12": ("mpt", 2012, dict(d_model=96, n_heads=12, n_layers=2, vocab_size=96, max_seq_len=64,
                                  expansion_ratio=4, attn_config=dict(alibi=True, alibi_bias_max=8))),
    # transformers' MPT honours clip_qkv (clamp of the fused Wqkv output), so one case exercises it.
    "mpt-h4-clip": ("mpt", 2104, dict(d_model=64, n_heads=4, n_layers=2, vocab_size=96, max_seq_len=64,
                                      expansion_ratio=4,
                                      attn_config=dict(alibi=True, alibi_bias_max=8, clip_qkv=0.5))),
}

# Falcon-RW (tiiuae/falcon-rw-1b, falcon-rw-7b): ALiBi, per-head fused QKV, sequential blocks, biases.
FALCON_RW = dict(alibi=True, multi_query=False, parallel_attn=False, new_decoder_architecture=False, bias=True,
                 layer_norm_epsilon=1e-5)
CASES.update({
    "falcon-h4": ("falcon", 3004, dict(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                       **FALCON_RW)),
    "falcon-h6": ("falcon", 3006, dict(vocab_size=96, hidden_size=72, num_hidden_layers=2, num_attention_heads=6,
                                       **FALCON_RW)),
    # 12 heads: slopes such as 2^-0.5 are not bf16 numbers, so Falcon's bf16 bias rounding shows.
    "falcon-h12": ("falcon", 3012, dict(vocab_size=96, hidden_size=96, num_hidden_layers=2, num_attention_heads=12,
                                        **FALCON_RW)),
})

# Falcon-RW's bias itself at long inputs (bf16 rounding of keys past 256), for the real head counts.
FALCON_BIAS_CASE = "falcon-alibi-bias"
FALCON_BIAS_HEADS = (32, 64)  # falcon-rw-1b, falcon-rw-7b
FALCON_BIAS_HEAD_DIM = 64  # both models
FALCON_BIAS_LEN = 8192
FALCON_BIAS_KEYS = sorted(set([0, 1, 2, 23, 100, 255, 256, 257, 258, 259, 260, 511, 512, 513, 515, 1000, 1001, 1002,
                               1003, 2047, 2048, 2049, 2050, 2055, 3000, 4095, 4097, 4100, 6000, 8191]))

# Noise added to every parameter after HF's own initialisation (which sets biases to 0 and
# LayerNorm weights to 1, hiding bugs).  Standard deviations:
NOISE_MATRIX = 0.08  # 2-D tensors: embeddings and Linear weights
NOISE_NORM_WEIGHT = 0.2  # LayerNorm gains
NOISE_BIAS = 0.1  # Linear biases and LayerNorm biases

# bloom-560m architecture (bigscience/bloom-560m config.json), minus fields the modeling code ignores.
BLOOM_560M = dict(
    vocab_size=250880,
    hidden_size=1024,
    n_layer=24,
    n_head=16,
    layer_norm_epsilon=1e-5,
    initializer_range=0.02,
    apply_residual_connection_post_layernorm=False,
    hidden_dropout=0.0,
    attention_dropout=0.0,
    pretraining_tp=1,
    slow_but_exact=False,
    use_cache=True,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=3,
    tie_word_embeddings=True,
)

# Random-model shapes for --shape: bloom-560m for the benchmark, bloom-tiny to smoke-test the
# benchmark pipeline in seconds (same code path, a few MB).
SHAPES = {
    "bloom-560m": BLOOM_560M,
    "bloom-tiny": dict(BLOOM_560M, vocab_size=1024, hidden_size=64, n_layer=2, n_head=4),
}


def _imports():
    import torch
    import transformers

    return torch, transformers


def build_model(family, config_kwargs, seed):
    """Randomly initialised float32 causal-LM with eager attention, in eval mode."""
    torch, transformers = _imports()
    if family == "bloom":
        config = transformers.BloomConfig(**config_kwargs)
    elif family == "mpt":
        config = transformers.MptConfig(**config_kwargs)
    elif family == "falcon":
        config = transformers.FalconConfig(**config_kwargs)
    else:
        raise ValueError(family)
    # Falcon's eager attention adds the ALiBi bias twice (see falcon_outputs); its sdpa path matches
    # the original Falcon-RW code, so Falcon's reference is sdpa.
    impl = "sdpa" if family == "falcon" else "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation=impl, dtype=torch.float32)
    model = model.to(torch.float32).eval()
    assert model.config._attn_implementation == impl, model.config._attn_implementation
    return model


def perturb_(model, seed):
    """Adds seeded Gaussian noise to every (unique) parameter, in sorted-name order."""
    torch, _ = _imports()
    gen = torch.Generator().manual_seed(seed)
    seen = set()
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(remove_duplicate=True), key=lambda kv: kv[0]):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if p.dim() >= 2:
                std = NOISE_MATRIX
            elif name.endswith("weight"):  # 1-D weight => LayerNorm gain
                std = NOISE_NORM_WEIGHT
            else:
                std = NOISE_BIAS
            p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std)


def token_ids_for(seed, vocab):
    torch, _ = _imports()
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (T,), generator=gen, dtype=torch.int64)


def reference_slopes(model):
    """Per-head ALiBi slopes exactly as the transformers implementation computes them (float32)."""
    torch, _ = _imports()
    mt = model.config.model_type
    if mt == "bloom":
        from transformers.models.bloom.modeling_bloom import _get_alibi_slopes

        slopes = _get_alibi_slopes(model.config.n_head, torch.device("cpu"))
    elif mt == "falcon":
        # falcon's build_alibi_tensor computes the same float32 slopes as BLOOM's _get_alibi_slopes
        # (identical lines), then rounds them to bf16 inside the bias; the unrounded ones are stored.
        from transformers.models.bloom.modeling_bloom import _get_alibi_slopes
        from transformers.models.falcon.modeling_falcon import build_alibi_tensor

        n = model.config.num_attention_heads
        slopes = _get_alibi_slopes(n, torch.device("cpu"))
        at_key_1 = build_alibi_tensor(torch.ones(1, 2, dtype=torch.long), n, torch.float32)[:, 0, 1]
        assert torch.equal(at_key_1, slopes.bfloat16().float()), (at_key_1, slopes)
    elif mt == "mpt":
        from transformers.models.mpt.modeling_mpt import build_mpt_alibi_tensor

        # Same call as MptModel.forward (alibi_bias_max is not passed there, so it is the default 8).
        n = model.config.n_heads
        bias = build_mpt_alibi_tensor(n, 2)  # [heads, 1, 2] = slope * [-1, 0]
        slopes = -bias[:, 0, 0]
    else:
        raise ValueError(mt)
    return [float(s) for s in slopes.to(torch.float32).tolist()]


def count_clipped(model, ids):
    """Number of fused-QKV activations that transformers' MPT clamps, per layer (0 if clip_qkv unset)."""
    torch, _ = _imports()
    if model.config.model_type != "mpt" or not model.config.attn_config.clip_qkv:
        return None
    clip = model.config.attn_config.clip_qkv
    counts, total, hooks = [], [], []
    for blk in model.transformer.blocks:
        def hook(_m, _inp, out):
            counts.append(int((out.abs() > clip).sum()))
            total.append(out.numel())
        hooks.append(blk.attn.Wqkv.register_forward_hook(hook))
    with torch.no_grad():
        model(ids[None, :])
    for h in hooks:
        h.remove()
    return list(zip(counts, total))


def _rw_attention_forward(self, hidden_states, alibi, attention_mask, position_ids=None, layer_past=None,
                          use_cache=False, output_attentions=False, position_embeddings=None, **kwargs):
    """FalconAttention.forward as the original Falcon-RW code computes it (tiiuae's modelling_RW.py,
    alibi branch): softmax((q.k + alibi) * inv_norm_factor + mask), the mask -1e9 in bf16 above the
    diagonal. transformers' own `attention_mask` (which already holds alibi/sqrt(head_dim)) is not
    used: the original builds the causal mask alone. `_alibi_factor` (1 unless set) multiplies the
    bias, to show that transformers' eager path equals the original with the bias doubled."""
    torch, _ = _imports()
    fused_qkv = self.query_key_value(hidden_states)
    q, k, v = self._split_heads(fused_qkv)  # each (batch, T, heads, head_dim)
    batch, t = q.shape[0], q.shape[1]
    q, k, v = (x.transpose(1, 2).reshape(batch * self.num_heads, t, self.head_dim) for x in (q, k, v))
    future = torch.ones(t, t, dtype=torch.bool).triu(1)
    mask_float = (future * 1.0).masked_fill(future, -1e9).to(torch.bfloat16)
    scores = (q @ k.transpose(-1, -2)).view(batch, self.num_heads, t, t)
    bias = alibi.view(batch, self.num_heads, 1, -1) * getattr(self, "_alibi_factor", 1.0)
    probs = torch.nn.functional.softmax((scores + bias) * self.inv_norm_factor + mask_float, dim=-1,
                                        dtype=hidden_states.dtype)
    context = probs.view(batch * self.num_heads, t, t) @ v
    return self.dense(self._merge_heads(context)), probs


def falcon_outputs(model, ids, alibi_factor=1.0):
    """Logits and attentions of a Falcon model run with the original Falcon-RW attention."""
    torch, _ = _imports()
    from transformers.models.falcon import modeling_falcon

    original = modeling_falcon.FalconAttention.forward
    modeling_falcon.FalconAttention.forward = _rw_attention_forward
    try:
        for layer in model.transformer.h:
            layer.self_attention._alibi_factor = alibi_factor
        with torch.no_grad():
            out = model(ids[None, :], output_attentions=True, use_cache=False, return_dict=True)
    finally:
        modeling_falcon.FalconAttention.forward = original
        for layer in model.transformer.h:
            del layer.self_attention._alibi_factor
    return out.logits[0], out.attentions


def falcon_report(model, ids):
    """Max |logit diff| between transformers' sdpa, its eager path and the original formula."""
    torch, _ = _imports()
    with torch.no_grad():
        sdpa = model(ids[None, :], use_cache=False).logits[0]
        # With output_attentions=True transformers leaves sdpa for its eager branch.
        eager_out = model(ids[None, :], use_cache=False, output_attentions=True)
    eager = eager_out.logits[0]
    rw, rw_attn = falcon_outputs(model, ids)
    rw_doubled, rw_doubled_attn = falcon_outputs(model, ids, alibi_factor=2.0)
    attn_diff = max((a - b).abs().max().item() for a, b in zip(eager_out.attentions, rw_doubled_attn))
    return {
        "sdpa_vs_original_logits": (sdpa - rw).abs().max().item(),
        "eager_vs_sdpa_logits": (eager - sdpa).abs().max().item(),
        "eager_vs_original_with_doubled_bias_logits": (eager - rw_doubled).abs().max().item(),
        "eager_vs_original_with_doubled_bias_attention": attn_diff,
    }


def make_falcon_bias(out_root):
    """transformers' Falcon bias as sdpa adds it (build_alibi_tensor / sqrt(head_dim)) at chosen keys."""
    torch, transformers = _imports()
    from transformers.models.falcon.modeling_falcon import build_alibi_tensor

    heads = {}
    for n in FALCON_BIAS_HEADS:
        alibi = build_alibi_tensor(torch.ones(1, FALCON_BIAS_LEN, dtype=torch.long), n, torch.float32)
        scaled = alibi[:, 0, :] / math.sqrt(FALCON_BIAS_HEAD_DIM)  # (heads, keys), as FalconModel.forward
        heads[str(n)] = scaled[:, FALCON_BIAS_KEYS].tolist()
    folder = os.path.join(out_root, FALCON_BIAS_CASE)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "bias.json"), "w") as f:
        json.dump({"head_dim": FALCON_BIAS_HEAD_DIM, "keys": FALCON_BIAS_KEYS, "bias": heads,
                   "transformers_version": transformers.__version__}, f)
        f.write("\n")
    print(json.dumps({"case": FALCON_BIAS_CASE, "heads": list(FALCON_BIAS_HEADS)}))


def make_case(name, out_root):
    torch, transformers = _imports()
    family, seed, kwargs = CASES[name]
    model = build_model(family, kwargs, seed)
    perturb_(model, seed + 1)
    ids = token_ids_for(seed + 2, model.config.vocab_size)

    folder = os.path.join(out_root, name)
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    _keep_only_model_files(folder)

    with torch.no_grad():
        out = model(ids[None, :], output_attentions=True, use_cache=False, return_dict=True)
    logits = out.logits[0].to(torch.float32)  # [T, vocab]
    attn_maps = out.attentions
    report = None
    if family == "falcon":
        # Logits from transformers' sdpa path (output_attentions=True would switch to eager);
        # attentions from the original formula, which sdpa matches (checked here).
        with torch.no_grad():
            logits = model(ids[None, :], use_cache=False).logits[0].to(torch.float32)
        report = falcon_report(model, ids)
        assert report["sdpa_vs_original_logits"] < 1e-5, report
        _, attn_maps = falcon_outputs(model, ids)
    # loss[p] = -log softmax(logits[p])[ids[p+1]], computed in float64 from the float32 logits.
    logp = torch.log_softmax(logits.double(), dim=-1)
    losses = -logp[torch.arange(T - 1), ids[1:]]
    attentions = {str(i): a[0].to(torch.float32).tolist() for i, a in enumerate(attn_maps)}
    assert len(attentions) == model.config.num_hidden_layers

    expected = {
        "model_type": model.config.model_type,
        "token_ids": [int(t) for t in ids.tolist()],
        "logits": logits.tolist(),
        "losses": [float(x) for x in losses.tolist()],
        "attentions": attentions,
        "alibi_slopes": reference_slopes(model),
        "transformers_version": transformers.__version__,
    }
    if family == "falcon":
        # Falcon scales bias and scores together: the slope on the softmax logits is m/sqrt(head_dim).
        head_dim = model.config.hidden_size // model.config.num_attention_heads
        expected["alibi_logit_scale"] = 1.0 / math.sqrt(head_dim)
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f)
        f.write("\n")

    info = {"case": name, "params": sum(p.numel() for p in model.parameters())}
    if report is not None:
        info.update(report)
    clipped = count_clipped(model, ids)
    if clipped is not None:
        info["clipped_qkv_per_layer"] = clipped
        assert all(c > 0 for c, _ in clipped), "clip_qkv too large: nothing clipped"
    print(json.dumps(info))


def _keep_only_model_files(folder):
    """save_pretrained may add other files; keep config.json + model.safetensors, world-readable."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name in ("config.json", "model.safetensors"):
            os.chmod(path, 0o644)  # safetensors writes the file 0600
        else:
            os.remove(path)


def make_shape(shape, out_dir):
    torch, transformers = _imports()
    if shape not in SHAPES:
        raise SystemExit(f"unknown --shape {shape!r} (known: {', '.join(SHAPES)})")
    config = transformers.BloomConfig(**SHAPES[shape])
    config.architectures = ["BloomForCausalLM"]
    torch.manual_seed(560)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
    model = model.to(torch.float32).eval()
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="100GB")
    _keep_only_model_files(out_dir)
    print(json.dumps({"shape": shape, "out": out_dir, "params": sum(p.numel() for p in model.parameters())}))


def bench_transformers(model_dir, lengths, threads, repeats, logits_to_keep, device="cpu", dtype="float32"):
    torch, transformers = _imports()
    torch.set_num_threads(threads)
    cuda = device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def peak_rss_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB

    t0 = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=getattr(torch, dtype), attn_implementation="eager")
    model = model.eval().to(device)
    load_s = time.perf_counter() - t0
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # small warm-up so one-time allocator/threadpool costs are not timed
        model(torch.randint(0, vocab, (1, 8), generator=gen).to(device), use_cache=False)
        sync()
    for L in lengths:
        ids = torch.randint(0, vocab, (1, L), generator=gen).to(device)
        times = []
        with torch.no_grad():
            if cuda:  # warm-up at this length (kernel selection, allocator)
                model(ids, use_cache=False, logits_to_keep=logits_to_keep)
                sync()
            for _ in range(repeats):
                t = time.perf_counter()
                out = model(ids, use_cache=False, logits_to_keep=logits_to_keep)
                sync()
                times.append(time.perf_counter() - t)
                del out
        best = min(times)
        print(json.dumps({
            "impl": "transformers",
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "model_dir": model_dir,
            "threads": threads,
            "device": torch.cuda.get_device_name() if cuda else "cpu",
            "dtype": dtype,
            "gpu_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
            "length": L,
            "logits_to_keep": logits_to_keep,
            "load_s": round(load_s, 3),
            "forward_s": round(best, 4),
            "forward_s_all": [round(x, 4) for x in times],
            "tokens_per_s": L / best,
            "peak_rss_mib": round(peak_rss_mib(), 1),  # process-wide peak so far (ru_maxrss)
        }), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="output folder (default tests/fixtures for fixture mode)")
    ap.add_argument("--cases", default=",".join(list(CASES) + [FALCON_BIAS_CASE]), help="comma-separated fixture cases")
    ap.add_argument("--shape", default=None, help="write a random model of this shape (bloom-560m, bloom-tiny) into --out")
    ap.add_argument("--bench-transformers", metavar="DIR", default=None, help="benchmark transformers on DIR")
    ap.add_argument("--lengths", default="512,2048", help="comma-separated sequence lengths for the benchmark")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for the benchmark")
    ap.add_argument("--repeats", type=int, default=1, help="timed forwards per length (best is reported)")
    ap.add_argument("--device", default="cpu", help="benchmark: cpu or cuda")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="benchmark dtype")
    ap.add_argument("--falcon-report", action="store_true",
                    help="print eager vs sdpa vs original Falcon-RW attention for the falcon cases, write nothing")
    ap.add_argument("--logits-to-keep", type=int, default=0,
                    help="benchmark: 0 = logits for every position (default), N = last N only")
    args = ap.parse_args(argv)

    if args.bench_transformers:
        lengths = [int(x) for x in args.lengths.split(",") if x]
        bench_transformers(args.bench_transformers, lengths, args.threads, args.repeats, args.logits_to_keep,
                           args.device, args.dtype)
        return
    if args.shape:
        if not args.out:
            ap.error("--shape needs --out DIR")
        make_shape(args.shape, args.out)
        return

    torch, transformers = _imports()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    out_root = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
    out_root = os.path.normpath(out_root)
    if args.falcon_report:
        for name, (family, seed, kwargs) in CASES.items():
            if family == "falcon":
                model = build_model(family, kwargs, seed)
                perturb_(model, seed + 1)
                print(json.dumps({"case": name, **falcon_report(model, token_ids_for(seed + 2, model.config.vocab_size))}))
        return
    known = list(CASES) + [FALCON_BIAS_CASE]
    for name in args.cases.split(","):
        if name not in known:
            raise SystemExit(f"unknown case {name!r}; known: {', '.join(known)}")
        if name == FALCON_BIAS_CASE:
            make_falcon_bias(out_root)
        else:
            make_case(name, out_root)


if __name__ == "__main__":
    sys.exit(main())
