#!/usr/bin/env python3
"""test_gpt2_reference.py - the CPU GPT-2 (trainer/gpt2_cpu.c) against
Hugging Face GPT2LMHeadModel in float64.

A small random GPT-2 with odd sizes (vocab 317, n_embd 36, n_head 3,
n_layer 2, n_positions 40) is built in PyTorch, saved with save_pretrained
(fp32 safetensors) and run through bin/tests/probe_gpt2.  Checks:
  - logits and loss within 1e-5 relative (rel = max|a-b| / max|ref|),
  - every parameter gradient within 1e-4 relative (per tensor, by name),
    with all targets and with some targets ignored (-1), and with a loss
    scale; repeated backward passes accumulate,
  - dropout: with the masks zeroflow draws (zf_hash3, re-implemented here)
    plugged into HF's dropout modules, loss and gradients match too; the
    same seed gives bitwise the same loss and gradients (also across
    OMP thread counts), another seed a different loss,
  - KV-cached logits equal the full forward; greedy generation equals HF's
    greedy generate (20 tokens) and stops at n_positions,
  - sampling: zf_sample only draws tokens HF's temperature/top-k/top-p
    warpers keep, with frequencies matching their probabilities.
"""
import math
import os
import sys
import tempfile

import numpy as np
import torch
from transformers import GPT2LMHeadModel
from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zf_testlib import D, H, P, V, check, finish, missing, probe_path, probe_stdout, rel, small_gpt2  # noqa: E402

PROBE = probe_path("probe_gpt2")
B, T = 3, 17


def probe(*args, env=None):
    return probe_stdout(PROBE, *args, env=env)


def make_model(seed, pdrop=0.0):
    return small_gpt2(seed, seed + 1, 0.2, pdrop)


def save(m, d):
    m.save_pretrained(d, safe_serialization=True)


def ref64(m):
    r = GPT2LMHeadModel(m.config)
    r.load_state_dict(m.state_dict())
    return r.double().eval()


def hf_loss_grads(m64, tokens, targets, scale=1.0):
    m64.zero_grad()
    logits = m64(input_ids=torch.tensor(tokens, dtype=torch.long)).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.tensor(targets, dtype=torch.long).reshape(-1),
                                             ignore_index=-1)
    (loss * scale).backward()
    grads = {n: p.grad.detach().numpy().copy() for n, p in m64.named_parameters()}
    return logits.detach().numpy(), float(loss), grads


def run_fwdbwd(model_dir, tokens, targets, out, *extra, env=None):
    os.makedirs(out, exist_ok=True)
    tok_f, tgt_f = os.path.join(out, "tokens.i32"), os.path.join(out, "targets.i32")
    np.asarray(tokens, dtype=np.int32).tofile(tok_f)
    args = ["fwdbwd", "--model", model_dir, "--tokens", tok_f, "--B", B, "--T", T, "--out", out, *extra]
    if targets is not None:
        np.asarray(targets, dtype=np.int32).tofile(tgt_f)
        args += ["--targets", tgt_f]
    probe(*args, env=env)
    logits = np.fromfile(os.path.join(out, "logits.f32"), dtype=np.float32).reshape(B, T, V)
    lines = open(os.path.join(out, "loss.txt")).read().split("\n")
    losses = [ln.split() for ln in lines if ln.strip()]
    table = {}
    for ln in open(os.path.join(out, "table.txt")):
        f = ln.split()
        if f[0] != "TOTAL":
            table[f[0]] = (int(f[1]), int(f[2]), (int(f[3]),) if int(f[4]) == 0 else (int(f[3]), int(f[4])))
    grads = None
    if targets is not None:
        flat = np.fromfile(os.path.join(out, "grads.f32"), dtype=np.float32)
        grads = {n: flat[o:o + k].reshape(s) for n, (o, k, s) in table.items()}
    return logits, losses, grads, table


def compare_grads(zg, hg, tol, label):
    names = sorted(hg)
    check(set(names) == set(zg), f"{label}: gradient tensors are the HF parameters ({len(names)})")
    worst, bad = 0.0, []
    for n in names:
        r = rel(zg[n], hg[n])
        worst = max(worst, r)
        if not r <= tol:
            bad.append(f"{n} rel {r:.3g}")
    check(not bad, f"{label}: every gradient within {tol} relative (worst {worst:.3g})" +
          ("" if not bad else f": {len(bad)} off: " + "; ".join(bad[:6]) + ("; ..." if len(bad) > 6 else "")))


# ------------------------------------------------- dropout masks (lib/rng.h)

M64 = (1 << 64) - 1


def _splitmix64(x):
    """one zf_splitmix64 step on a Python int: (new state, output)"""
    x = (x + 0x9E3779B97F4A7C15) & M64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return x, z ^ (z >> 31)


def drop_key(seed, site):
    """zf_drop_key(seed, site) = zf_hash3(seed, site, "drop")"""
    am = (site * 0x9E3779B97F4A7C15) & M64
    rot = ((am << 17) | (am >> 47)) & M64
    x = seed ^ rot ^ ((0x64726F70 * 0xC2B2AE3D27D4EB4F) & M64)
    x, _ = _splitmix64(x)
    return _splitmix64(x)[1]


def _mix32(x):
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def drop_u16(key, idx):
    """zf_drop_u16(key, idx) for an array of idx: idx and idx^1 share the
    32-bit hash of pair idx >> 1 (even idx the low half, odd the high)."""
    c = idx.astype(np.uint64) >> np.uint64(1)
    with np.errstate(over="ignore"):
        x = _mix32((c & np.uint64(0xFFFFFFFF)).astype(np.uint32) ^ np.uint32(key & 0xFFFFFFFF))
        x = x ^ np.uint32(key >> 32) ^ ((c >> np.uint64(32)).astype(np.uint32) * np.uint32(0x9E3779B9))
        h = _mix32(x)
    return np.where((idx & 1) == 1, h >> np.uint32(16), h & np.uint32(0xFFFF))


def mask(seed, site, shape, p):
    thr = math.ceil(float(np.float32(p)) * 65536.0)
    keep = drop_u16(drop_key(seed, site), np.arange(int(np.prod(shape)), dtype=np.uint64)) >= thr
    return torch.tensor((keep / (1.0 - float(np.float32(p)))).reshape(shape), dtype=torch.float64)


class FixedDrop(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return x * self.m


def plug_masks(m64, seed, p):
    m64.transformer.drop = FixedDrop(mask(seed, 0, (B, T, D), p))
    for l, blk in enumerate(m64.transformer.h):
        blk.attn.attn_dropout = FixedDrop(mask(seed, 4 * l + 1, (B, H, T, T), p))
        blk.attn.resid_dropout = FixedDrop(mask(seed, 4 * l + 2, (B, T, D), p))
        blk.mlp.dropout = FixedDrop(mask(seed, 4 * l + 3, (B, T, D), p))


# -------------------------------------------------------------------- tests

def main():
    if missing(PROBE):
        return 1
    torch.set_num_threads(2)
    rng = np.random.default_rng(1234)
    tmp = tempfile.mkdtemp(prefix="zf-gpt2ref-")
    m = make_model(7)
    mdir = os.path.join(tmp, "model")
    save(m, mdir)
    m64 = ref64(m)

    tokens = rng.integers(0, V, size=(B, T))
    targets = rng.integers(0, V, size=(B, T))
    targets_ign = targets.copy()
    targets_ign[0, :5] = -1
    targets_ign[1, 10] = -1
    targets_ign[2, ::3] = -1

    # 1. all targets
    hl, hloss, hg = hf_loss_grads(m64, tokens, targets)
    zl, zloss, zg, table = run_fwdbwd(mdir, tokens, targets, os.path.join(tmp, "c1"))
    check(rel(zl, hl) <= 1e-5, f"logits within 1e-5 relative (rel {rel(zl, hl):.3g})")
    lz = float(zloss[0][0])
    check(abs(lz - hloss) / abs(hloss) <= 1e-5, f"loss {lz:.7f} vs HF {hloss:.7f}")
    compare_grads(zg, hg, 1e-4, "all targets")
    offs = sorted(o for o, _, _ in table.values())
    check(all(o % 16 == 0 for o in offs), "parameter offsets aligned to 16 floats")

    # 2. some targets ignored, and a loss scale (gradient = scale * d mean loss)
    hl2, hloss2, hg2 = hf_loss_grads(m64, tokens, targets_ign, scale=256.0)
    zl2, zloss2, zg2, _ = run_fwdbwd(mdir, tokens, targets_ign, os.path.join(tmp, "c2"), "--scale", 256)
    lz2 = float(zloss2[0][0])
    check(abs(lz2 - hloss2) / abs(hloss2) <= 1e-5, f"loss with ignored targets {lz2:.7f} vs HF {hloss2:.7f}")
    compare_grads(zg2, hg2, 1e-4, "ignored targets, scale 256")

    # gradient accumulation: backward adds into the buffer
    _, _, zg3, _ = run_fwdbwd(mdir, tokens, targets_ign, os.path.join(tmp, "c2b"), "--scale", 256, "--accum", 3)
    worst = max(rel(zg3[n], 3.0 * zg2[n].astype(np.float64)) for n in zg2)
    check(worst <= 1e-6, f"3 backward passes accumulate 3x the gradient (rel {worst:.3g})")

    # 3. logits only (no targets): same logits, loss 0
    zl3, zloss3, _, _ = run_fwdbwd(mdir, tokens, None, os.path.join(tmp, "c3"))
    check(np.array_equal(zl3, zl) and float(zloss3[0][0]) == 0.0, "forward without targets: same logits, loss 0")

    # 4. dropout with zeroflow's masks reproduced in HF
    pdir = os.path.join(tmp, "model_drop")
    mp = make_model(7, pdrop=0.1)
    save(mp, pdir)
    seed = 0x5EED
    mp64 = ref64(mp)
    plug_masks(mp64, seed, 0.1)
    dl, dloss, dg = hf_loss_grads(mp64, tokens, targets_ign)
    zl4, zloss4, zg4, _ = run_fwdbwd(pdir, tokens, targets_ign, os.path.join(tmp, "c4"), "--train", "--seed", seed,
                                     "--repeat", 2)
    lz4 = float(zloss4[0][0])
    check(rel(zl4, dl) <= 1e-5, f"dropout logits within 1e-5 relative (rel {rel(zl4, dl):.3g})")
    check(abs(lz4 - dloss) / abs(dloss) <= 1e-5, f"dropout loss {lz4:.7f} vs HF with the same masks {dloss:.7f}")
    compare_grads(zg4, dg, 1e-4, "dropout")
    check(abs(lz4 - lz2) > 1e-4, f"dropout changes the loss ({lz4:.6f} vs {lz2:.6f})")
    same_proc = zloss4[0][1] == zloss4[1][1] and ["GRADS-DIFFER"] not in zloss4
    check(same_proc, "same seed twice in one process: bitwise same loss and gradients")
    env1 = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env2 = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="1")
    _, za, ga, _ = run_fwdbwd(pdir, tokens, targets_ign, os.path.join(tmp, "c5"), "--train", "--seed", seed, env=env1)
    _, zb, gb, _ = run_fwdbwd(pdir, tokens, targets_ign, os.path.join(tmp, "c6"), "--train", "--seed", seed, env=env2)
    check(za[0][1] == zb[0][1] == zloss4[0][1] and all(np.array_equal(ga[n], gb[n]) for n in ga),
          f"same seed on 1 and 2 threads: bitwise same loss ({za[0][1]}) and gradients")
    _, zc, _, _ = run_fwdbwd(pdir, tokens, targets_ign, os.path.join(tmp, "c7"), "--train", "--seed", seed + 1)
    check(zc[0][1] != zloss4[0][1], f"another seed gives another loss ({zc[0][0]} vs {zloss4[0][0]})")
    _, ze, _, _ = run_fwdbwd(pdir, tokens, targets_ign, os.path.join(tmp, "c8"))
    check(ze[0][1] == zloss2[0][1], "dropout config in eval mode equals the no-dropout loss bitwise")

    # 5. KV cache equals the full forward
    seq = rng.integers(0, V, size=P).astype(np.int32)
    sf = os.path.join(tmp, "seq.i32")
    seq.tofile(sf)
    worst, scale = map(float, probe("kvcheck", "--model", mdir, "--tokens", sf).split())
    check(worst / scale <= 1e-5, f"KV-cached logits equal the full forward over {P} positions (rel {worst / scale:.3g})")

    # 6. greedy generation vs HF generate
    for n_prompt, n_new, label in ((5, 20, "20 tokens"), (30, 20, "stops at n_positions")):
        prompt = rng.integers(0, V, size=n_prompt).astype(np.int32)
        pf, of = os.path.join(tmp, "prompt.i32"), os.path.join(tmp, "gen.i32")
        prompt.tofile(pf)
        probe("generate", "--model", mdir, "--tokens", pf, "--n", n_new, "--out", of)
        zids = np.fromfile(of, dtype=np.int32).tolist()
        hf_new = min(n_new, P - n_prompt)
        with torch.no_grad():
            ids = torch.tensor([prompt.tolist()], dtype=torch.long)
            out = m64.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=hf_new, do_sample=False,
                               pad_token_id=0)
        hids = out[0, n_prompt:].tolist()
        check(zids == hids and len(zids) == hf_new, f"greedy generation, {label}: {len(zids)} ids equal HF's")
    # eot stops generation (the eot id is emitted, nothing after it)
    eot = hids[3]
    probe("generate", "--model", mdir, "--tokens", pf, "--n", n_new, "--out", of, "--eot", eot)
    zids = np.fromfile(of, dtype=np.int32).tolist()
    check(zids == hids[:hids.index(eot) + 1], "generation stops after the end-of-text id")

    # 7. sampling semantics vs HF's warpers
    lg = torch.tensor(rng.normal(0, 2.0, size=60), dtype=torch.float32)
    lf = os.path.join(tmp, "logits.f32")
    lg.numpy().tofile(lf)
    draws = 40000
    for temp, k, p in ((1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8), (0.9, 10, 0.6)):
        sc = lg[None].clone()
        sc = TemperatureLogitsWarper(temp)(None, sc)
        if k > 0:
            sc = TopKLogitsWarper(k)(None, sc)
        if p < 1.0:
            sc = TopPLogitsWarper(p)(None, sc)
        probs = torch.softmax(sc.double(), dim=-1)[0].numpy()
        out = probe("sample", "--logits", lf, "--draws", draws, "--temp", temp, "--top-k", k, "--top-p", p, "--seed", 3)
        cnt = np.zeros(len(probs))
        for ln in out.split("\n"):
            if ln.strip():
                i, c = ln.split()
                cnt[int(i)] = int(c)
        freq = cnt / draws
        support_ok = bool(np.all(cnt[probs == 0] == 0)) and bool(np.all(cnt[probs > 0.01] > 0))
        sd = np.sqrt(probs * (1 - probs) / draws)
        freq_ok = bool(np.all(np.abs(freq - probs) <= 5 * sd + 1e-4))
        check(support_ok and freq_ok, f"sampling temp={temp} top_k={k} top_p={p}: support and frequencies as HF "
              f"(kept {int((probs > 0).sum())} tokens, max dev {np.max(np.abs(freq - probs)):.4f})")
    out = probe("sample", "--logits", lf, "--draws", 50, "--temp", 0)
    check(out.split() == [str(int(torch.argmax(lg))), "50"], "temperature 0 is greedy argmax")

    return finish()


if __name__ == "__main__":
    sys.exit(main())
