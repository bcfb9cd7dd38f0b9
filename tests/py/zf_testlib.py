"""zf_testlib.py - helpers shared by the Python tests in tests/py.

Owns: where the built binaries are, running a probe (bin/tests/probe_*),
recording checks and the closing verdict, the relative error the reference
tests report, reading a run's metrics.jsonl, and the small random GPT-2 that
the model tests compare with Hugging Face.  The shell tests reach it with
pipeline_lib.sh's zf_py (PYTHONPATH set).  Not a test itself (the runner runs only test_*.py); a test
imports it from its own directory:

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from zf_testlib import ROOT, check, finish
"""
import os
import subprocess
import sys

import numpy as np

# $ZF_ROOT (set by tests/run_tests.sh), else the repository holding this file.
ROOT = os.environ.get("ZF_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The small GPT-2 of the model tests: odd sizes, so that no dimension is a
# multiple of a vector width by luck (vocab, n_embd, n_head, n_layer, n_positions).
V, D, H, L, P = 317, 36, 3, 2, 40

FAILS = []  # what every failed check said


def step_rows(path):
    """{step: row} of the "step" events of a run's metrics.jsonl (PATH: the
    file or the run's output directory)."""
    import json
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    out = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r.get("event") == "step":
                out[r["step"]] = r
    return out


def probe_path(name):
    """Path of the test helper program bin/tests/NAME."""
    return os.path.join(ROOT, "bin", "tests", name)


def missing(*paths):
    """True (after saying so on stderr) when one of the programs is not built."""
    gone = [p for p in paths if not os.access(p, os.X_OK)]
    for p in gone:
        print(f"{p} is missing: run make build first", file=sys.stderr)
    return bool(gone)


def run_probe(path, *args, env=None):
    """Runs a probe with the arguments (str() of each); the CompletedProcess, text output."""
    return subprocess.run([path, *map(str, args)], capture_output=True, text=True, env=env)


def probe_stdout(path, *args, env=None):
    """run_probe's stdout; RuntimeError with its stderr when it exits nonzero."""
    r = run_probe(path, *args, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{os.path.basename(path)} {' '.join(map(str, args))} failed: {r.stderr.strip()}")
    return r.stdout


def check(ok, what, quiet=False):
    """Records one check: prints "ok    WHAT" (not when quiet) or "FAIL  WHAT"
    (a failure's WHAT also goes to FAILS); returns ok."""
    if not ok or not quiet:
        print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        FAILS.append(what)
    return ok


def finish():
    """The closing line and the exit status: 0 when every check passed."""
    print(f"{len(FAILS)} checks failed" if FAILS else "all checks passed", flush=True)
    return 1 if FAILS else 0


def rel(a, ref):
    """max|a - ref| / max|ref| in float64 (the model tests' relative error)."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(a - ref)) / max(np.max(np.abs(ref)), 1e-30))


def compare_runs(work, a, b, steps, loss_tol, param_tol):
    """Runs A and B (output directories under WORK, their checkpoints
    consolidated into WORK/A.safetensors and WORK/B.safetensors) logged
    steps 1..STEPS and agree: every step's loss within LOSS_TOL relative,
    the final parameters within PARAM_TOL of the model's largest parameter
    (the whole flat buffer's inf-norm: attention's key bias gets exactly
    zero gradient and stays at rounding noise, so a per-tensor or
    per-element ratio would measure noise).  Prints both figures; raises
    AssertionError otherwise."""
    from safetensors.numpy import load_file
    la, lb = step_rows(os.path.join(work, a)), step_rows(os.path.join(work, b))
    for run, rows in ((a, la), (b, lb)):
        assert sorted(rows) == list(range(1, steps + 1)), \
            f"{run}: steps logged {sorted(rows)} (only rank 0 writes metrics)"
    worst = max(abs(la[s]["loss"] - lb[s]["loss"]) / abs(lb[s]["loss"]) for s in la)
    pa = load_file(os.path.join(work, a + ".safetensors"))
    pb = load_file(os.path.join(work, b + ".safetensors"))
    assert pa.keys() == pb.keys(), f"{a} and {b} hold other tensors"
    x = np.concatenate([pa[k].astype(np.float64).ravel() for k in sorted(pa)])
    y = np.concatenate([pb[k].astype(np.float64).ravel() for k in sorted(pb)])
    wp = np.abs(x - y).max() / np.abs(y).max()
    print(f"{a} vs {b}: losses within {worst:.2e} (tolerance {loss_tol:g}), parameters within {wp:.2e} "
          f"(tolerance {param_tol:g}); final loss {la[steps]['loss']:.4f} vs {lb[steps]['loss']:.4f}")
    assert worst <= loss_tol, f"losses of {a} vs {b}: relative difference {worst:.3g} > {loss_tol:g}"
    assert wp <= param_tol, f"parameters of {a} vs {b}: max difference {wp:.3g} of the largest parameter > {param_tol:g}"


def small_gpt2(seed, gen_seed, ln_std, pdrop=0.0):
    """A float32 GPT2LMHeadModel of sizes V, D, H, L, P in eval mode, built
    after torch.manual_seed(seed), whose every parameter is then redrawn from
    torch.Generator seeded gen_seed (one randn per tensor, in named_parameters
    order) so that no path hides behind HF's zero biases and unit LayerNorms:
    LayerNorm weights 1 + ln_std * N(0, 1), other vectors 0.1 * N(0, 1),
    matrices 0.15 * N(0, 1).  pdrop sets the three dropout rates."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    # eager attention: the reference (and the dropout masks injected into its
    # dropout modules) must be the plain formula, not a fused SDPA kernel,
    # which newer transformers pick by default
    cfg = GPT2Config(vocab_size=V, n_positions=P, n_embd=D, n_layer=L, n_head=H,
                     resid_pdrop=pdrop, embd_pdrop=pdrop, attn_pdrop=pdrop, attn_implementation="eager")
    torch.manual_seed(seed)
    m = GPT2LMHeadModel(cfg)
    g = torch.Generator().manual_seed(gen_seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.copy_(1.0 + ln_std * r)
            else:
                p.copy_((0.1 if p.dim() == 1 else 0.15) * r)
    return m.float().eval()
