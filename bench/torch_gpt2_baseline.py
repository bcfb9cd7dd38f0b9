"""PyTorch GPU baseline for bench/run_gpu_bench.sh: transformers'
GPT2LMHeadModel built from a zeroflow preset (config/models/NAME.json, no
hub), bf16 autocast, dropout as in the preset, clip_grad_norm_(1.0) and fused
AdamW (fp32 parameters and state on the GPU: the same work as zeroflow's
run without optimizer offload), the same micro batch and sequence length.
Eager and torch.compile.  Timed with CUDA events over the steps after the
warm-up; prints tokens/s, MFU and the forward / backward / optimizer split
(events between the phases) as one line per mode, plus one JSON line.

    python3 bench/torch_gpt2_baseline.py --model gpt2-124m --batch 32 --seq 1024 [--steps 20] [--modes eager,compile]

MFU = tokens/s * (6 N + 6 L T d) / 989e12 (H100 SXM dense bf16), N the
parameter count (embeddings included), as bench/run_gpu_bench.sh counts.
"""
import argparse, json, os, statistics, sys, time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="gpt2-124m")
ap.add_argument("--vocab", type=int, default=50257, help="used when the preset says auto")
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--seq", type=int, default=1024)
ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--warmup", type=int, default=5)
ap.add_argument("--modes", default="eager,compile")
ap.add_argument("--peak", type=float, default=989e12)
a = ap.parse_args()
root = os.environ.get("ZF_ROOT", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
c = json.load(open(os.path.join(root, "config", "models", a.model + ".json")))
if c.get("vocab_size") == "auto":
    c["vocab_size"] = a.vocab
cfg = GPT2Config(**{k: v for k, v in c.items() if k not in ("architectures", "model_type")})
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True
dev = torch.device("cuda")


def run(mode):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg).to(dev).train()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
    fwd = torch.compile(model) if mode == "compile" else model
    B, T = a.batch, a.seq
    g = torch.Generator(device=dev).manual_seed(1)
    ev = [[torch.cuda.Event(enable_timing=True) for _ in range(4)] for _ in range(a.warmup + a.steps)]
    t_compile = time.time()
    for s in range(a.warmup + a.steps):
        x = torch.randint(0, cfg.vocab_size, (B, T), device=dev, generator=g)
        e = ev[s]
        e[0].record()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(input_ids=x, labels=x).loss
        e[1].record()
        loss.backward()
        e[2].record()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        e[3].record()
        if s == a.warmup - 1:
            torch.cuda.synchronize()
            t_compile = time.time() - t_compile
    torch.cuda.synchronize()
    timed = ev[a.warmup:]
    f = [e[0].elapsed_time(e[1]) for e in timed]
    b = [e[1].elapsed_time(e[2]) for e in timed]
    o = [e[2].elapsed_time(e[3]) for e in timed]
    step = [e[0].elapsed_time(e[3]) for e in timed]
    # steps run back to back: total time from the first timed start to the last end
    total_ms = timed[0][0].elapsed_time(timed[-1][3])
    tok_s = B * T * len(timed) / (total_ms / 1e3)
    L, d = cfg.n_layer, cfg.n_embd
    flops_tok = 6 * n_params + 6 * L * T * d
    mfu = tok_s * flops_tok / a.peak
    r = dict(impl="torch-" + mode, model=a.model, params=n_params, B=B, T=T, steps=len(timed), tok_s=tok_s, mfu=mfu,
             step_ms=statistics.median(step), forward_ms=statistics.median(f), backward_ms=statistics.median(b),
             optimizer_ms=statistics.median(o), warmup_s=t_compile, loss=loss.item(),
             peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30)
    print(f"torch {mode:8s} {a.model} B{B} T{T}: {tok_s:,.0f} tok/s, MFU {100 * mfu:.1f}%, step {r['step_ms']:.1f} ms "
          f"(forward {r['forward_ms']:.1f}, backward {r['backward_ms']:.1f}, clip+AdamW {r['optimizer_ms']:.1f}), "
          f"warm-up {t_compile:.0f} s, peak {r['peak_mem_gib']:.1f} GiB", flush=True)
    print("JSON " + json.dumps(r), flush=True)
    del model, opt, fwd
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}", flush=True)
for m in a.modes.split(","):
    try:
        run(m)
    except Exception as ex:  # a failing mode (compile) must not hide the others
        print(f"torch {m}: FAILED: {type(ex).__name__}: {ex}", flush=True)
