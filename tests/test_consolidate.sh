#!/usr/bin/env bash
# `ckptd consolidate` (zero_to_fp32) and `ckptd export` on a real ZeRO-3
# checkpoint of 3 ranks (uneven partitions): the fp32 file equals, bitwise,
# the parameters the trainer itself exports (--export_hf, gathered from its
# working params) and the model.safetensors of `ckptd export` and of
# `consolidate --hf`; the bf16 file is the fp32 one rounded to nearest even
# (as torch rounds); the HF directory loads in transformers; the command's
# bad input (flags, paths, a corrupted or incomplete checkpoint) ends in a
# one-line error and no output file.
source "$(dirname "$0")/pipeline_lib.sh"
command -v mpirun >/dev/null || { echo "mpirun not installed (openmpi-bin)"; exit 77; }
w=$(new_out)
CK=$ROOT/bin/ckptd
"$ROOT/scripts/run_pipeline.sh" zero-3 "${TINY[@]}" --batch_size 2 --world_size 3 --max_train_steps 4 --save_checkpoint \
    --generation_prompt "" --export_hf "$w/trainer-export" --output_dir "$w/run" >"$w/run.out" 2>&1 ||
  { cat "$w/run.out" >&2; fail "3-rank run failed"; }
ck=$w/run/checkpoints/$(cat "$w/run/checkpoints/latest")

"$CK" consolidate "$w/run" "$w/fp32.safetensors" >"$w/c.out" || fail "consolidate fp32"
grep -q "consolidated .* to $w/fp32.safetensors (fp32)" "$w/c.out" || fail "consolidate did not say what it wrote"
"$CK" consolidate "$ck" "$w/bf16.safetensors" --dtype bf16 >/dev/null || fail "consolidate bf16"
"$CK" consolidate "$ck" "$w/hf" --hf >/dev/null || fail "consolidate --hf"
"$CK" export "$w/run" "$w/exported" >/dev/null || fail "export"
cmp "$w/hf/model.safetensors" "$w/exported/model.safetensors" || fail "consolidate --hf and export differ"
"$ZF_PYTHON" - "$w" <<'PY' || fail "consolidated model"
import sys, torch
from safetensors.torch import load_file
from transformers import GPT2LMHeadModel
w = sys.argv[1]
f32, b16 = load_file(f"{w}/fp32.safetensors"), load_file(f"{w}/bf16.safetensors")
mine = load_file(f"{w}/trainer-export/model.safetensors")
hf = load_file(f"{w}/hf/model.safetensors")
assert f32.keys() == mine.keys() == b16.keys() == hf.keys(), (sorted(f32)[:3], sorted(mine)[:3])
for k in f32:
    assert f32[k].dtype == torch.float32 and b16[k].dtype == torch.bfloat16, k
    assert torch.equal(f32[k], mine[k]), f"{k}: consolidated masters differ from the trainer's parameters"
    assert torch.equal(f32[k], hf[k]), f"{k}: HF directory differs"
    assert torch.equal(f32[k].to(torch.bfloat16), b16[k]), f"{k}: bf16 is not the rounded fp32"
m = GPT2LMHeadModel.from_pretrained(f"{w}/hf").eval()
x = torch.tensor([[1, 2, 3, 4]])
with torch.no_grad():
    assert torch.isfinite(m(x).logits).all()
print("consolidated:", len(f32), "tensors")
PY

# bad input: each fails with a one-line error naming the problem, writes nothing
bad() { # bad NEEDLE ARGS...
  local needle=$1; shift
  if "$CK" "$@" >"$w/bad.out" 2>&1; then fail "accepted: ckptd $*"; fi
  grep -q -- "$needle" "$w/bad.out" || { cat "$w/bad.out" >&2; fail "ckptd $*: expected an error with '$needle'"; }
  [ "$(wc -l < "$w/bad.out")" -le 2 ] || { cat "$w/bad.out" >&2; fail "ckptd $*: error is not one line"; }
}
bad "usage: ckptd consolidate" consolidate "$w/run"
bad "unexpected argument" consolidate "$w/run" "$w/x.safetensors" extra
bad "unknown flag" consolidate "$w/run" "$w/x.safetensors" --fp16
bad "expected fp32 or bf16, got 'fp16'" consolidate "$w/run" "$w/x.safetensors" --dtype fp16
bad "the --hf directory is written in fp32" consolidate "$w/run" "$w/xhf" --hf --dtype bf16
bad "got a directory" consolidate "$w/run" "$w/hf"
bad "expected a zeroflow checkpoint" consolidate "$w/nowhere" "$w/x.safetensors"
bad "does not exist" consolidate "$w/run" "$w/no/such/dir/x.safetensors"
bad "usage: ckptd export" export "$w/run"
mkdir -p "$w/keep" && echo x > "$w/keep/notes.txt"
bad "not a model directory" consolidate "$w/run" "$w/keep" --hf
# damaged checkpoints (copies)
cp -r "$ck" "$w/trunc"
size=$(stat -c %s "$w/trunc/optim-r1-master.zft")
truncate -s $((size / 2)) "$w/trunc/optim-r1-master.zft"
bad "optim-r1-master" consolidate "$w/trunc" "$w/x.safetensors"
cp -r "$ck" "$w/missing" && rm "$w/missing/optim-r2-master.zft"
bad "optim-r2-master" consolidate "$w/missing" "$w/x.safetensors"
cp -r "$ck" "$w/world" && sed -i 's/"world_size": 3/"world_size": 2/' "$w/world/meta.json"
bad "world_size: expected 3" consolidate "$w/world" "$w/x.safetensors"
cp -r "$ck" "$w/gap" && cp -r "$ck" "$w/overlap"
"$ZF_PYTHON" - "$w/gap/meta.json" "$w/overlap/meta.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))   # rank 2's partition dropped (and the world said to be 2)
m["optimizer"]["shards"] = [s for s in m["optimizer"]["shards"] if s["rank"] != 2]
m["world_size"] = 2
json.dump(m, open(sys.argv[1], "w"))
m = json.load(open(sys.argv[2]))   # rank 1's partition said to lie over rank 0's
for s in m["optimizer"]["shards"]:
    if s["rank"] == 1: s["offset"] = 0
json.dump(m, open(sys.argv[2], "w"))
PY
bad "no rank holds parameters" consolidate "$w/gap" "$w/x.safetensors"
bad "rank 1's partition disagrees" consolidate "$w/overlap" "$w/x.safetensors"
[ ! -e "$w/x.safetensors" ] && [ -z "$(ls "$w" | grep -e '\.tmp-')" ] || fail "a failed consolidate left files"
assert_clean "$(run_id_in "$w/run.out")"
echo "consolidate ok"
