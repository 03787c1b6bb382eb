#!/usr/bin/env bash
# The GPU figures of docs/performance.md, in at most 8 minutes: run it on any machine with a CUDA device.
#
#   bash benchmarks/gpu_check.sh
#
# Runs on the first visible GPU, each step under `timeout`: the limits below add up to 474 s with the kill
# grace, and a step is cut short (or skipped) where less than its limit is left of the 8 minutes:
#   1. the model benchmarks with --device cuda (GraphSAGE at 0.25 deg with its scaling, GATv2 and the
#      interaction network at 1 deg, the encoder-processor-decoder at 0.5 deg, r = 5), each with its
#      dense-product floor at the product rates measured on the GPU;
#   2. a short `gnnddm train` (+experiment=quickstart) with trainer.device=cuda, and the same with
#      trainer.compile=true and with trainer.precision=bf16 where the composed config has those keys
#      (trainer.blocks, where it exists, is set to 1 in every run: cache-blocking is for CPU caches);
#   3. halo_sync on 2 subdomains with 2 nccl ranks, against the same run in one process.
# A step that fails or runs out of time is reported as such and the others go on. The figures are written
# into docs/performance.md as the generated block gpu_check:<gpu name> (benchmarks/results_blocks.py),
# which benchmarks/check_results.py checks like every other block. Without a CUDA device it says so and
# exits 0.
set -euo pipefail

cd "$(dirname "$0")/.."
SOURCES="gnnddm/models gnnddm/ddm gnnddm/distributed gnnddm/training benchmarks/bench_model.py
benchmarks/bench_gatv2.py benchmarks/bench_interaction.py benchmarks/bench_mesh_model.py benchmarks/floor.py
benchmarks/side_by_side.py benchmarks/gpu_check.sh"
GRACE=3  # seconds between timeout's TERM and its KILL
deadline=$((SECONDS + 480 - 15 - GRACE))  # 8 minutes, less the writing of the block at the end

gpu=$(timeout --kill-after=$GRACE 15 python3 -c "import torch
if torch.cuda.is_available(): print(torch.cuda.device_count(), torch.cuda.get_device_name(0), sep='\t')" \
  2>/dev/null || true)
if [[ -z "$gpu" ]]; then
  echo "gpu_check: no CUDA device is available; nothing measured"
  exit 0
fi
count=${gpu%%$'\t'*}
name=${gpu#*$'\t'}
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
echo "gpu_check: $name ($count visible); logs in $WORK"
# the code measured, as the run starts
timeout --kill-after=$GRACE 10 python3 - "$WORK/stamp.json" $SOURCES <<'PY'
import dataclasses, json, sys
sys.path.insert(0, "benchmarks")
import results_blocks
stamp = results_blocks.stamp(sys.argv[2:], "bash benchmarks/gpu_check.sh")
open(sys.argv[1], "w").write(json.dumps(dataclasses.asdict(stamp)))
PY

skip() {  # skip NAME REASON
  echo "== $1: skipped: $2"
  printf '%s\tskipped\t0\t%s\n' "$1" "$2" >> "$WORK/status.tsv"
}
# step NAME SECONDS COMMAND...: run COMMAND under timeout (SECONDS, or what is left before the deadline), its
# output shown and kept in $WORK/NAME.log, its exit status recorded in $WORK/status.tsv (124: timed out)
step() {
  local name=$1 seconds=$2 rc=0 left=$((deadline - SECONDS - GRACE))
  shift 2
  if ((left < seconds)); then seconds=$left; fi
  if ((seconds <= 0)); then
    skip "$name" "no time left of the 8 minutes"
    return 0
  fi
  echo "== $name (at most ${seconds}s): $*"
  timeout --kill-after=$GRACE "$seconds" "$@" 2>&1 | tee "$WORK/$name.log" || rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$seconds" "$*" >> "$WORK/status.tsv"
  return 0
}

tables="$WORK/tables.md"
step bench_model 90 python3 benchmarks/bench_model.py --device cuda --iters 3 --output "$tables"
step bench_gatv2 30 python3 benchmarks/bench_gatv2.py --device cuda --output "$tables"
step bench_interaction 30 python3 benchmarks/bench_interaction.py --device cuda --output "$tables"
step bench_mesh_model 55 python3 benchmarks/bench_mesh_model.py --device cuda --resolution 0.5 --iters 3 \
  --output "$tables"

# the trainer's options as this checkout composes them
trainer=$(timeout --kill-after=$GRACE 15 gnnddm train --cfg job 2>/dev/null | sed -n '/^trainer:/,/^[^ ]/p' || true)
has() { grep -q "^  $1:" <<< "$trainer"; }
train=(gnnddm train +experiment=quickstart trainer.device=cuda trainer.max_iterations=20 trainer.eval_every=10
       trainer.progress=false tracking.enabled=false)
if has blocks; then
  train+=(trainer.blocks=1)
else
  echo "== trainer.blocks: not in the composed config; no cache-blocking to switch off"
fi
step train 30 "${train[@]}" output_dir="$WORK/train"
if has compile; then
  step train_compile 45 "${train[@]}" trainer.compile=true output_dir="$WORK/train_compile"
else
  skip train_compile "trainer.compile is not in the composed config"
fi
if has precision; then
  step train_bf16 30 "${train[@]}" trainer.precision=bf16 output_dir="$WORK/train_bf16"
else
  skip train_bf16 "trainer.precision is not in the composed config"
fi

halo=("${train[@]}" ddm=halo_sync partition.num_parts=2 partition.overlap=1)
step halo_sync_1process 30 "${halo[@]}" output_dir="$WORK/halo_sync_1process"
step halo_sync_2nccl 40 "${halo[@]}" distributed.backend=nccl distributed.nproc_per_node=2 \
  output_dir="$WORK/halo_sync_2nccl"
if [[ "$count" -lt 2 ]] && ! grep -q $'^halo_sync_2nccl\t0\t' "$WORK/status.tsv"; then
  echo "   2 nccl ranks need 2 GPUs: NCCL refuses two ranks on one device, and $count is visible"
fi

# the block: every step's outcome, the benchmarks' tables, the training runs' figures
timeout --kill-after=$GRACE 15 python3 - "$WORK" "$name" "$count" <<'PY'
import json, re, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import results_blocks as rb

work, gpu, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
stamp = json.loads((work / "stamp.json").read_text())
stamp = rb.Stamp(**{**stamp, "sources": tuple(stamp["sources"])})
lines = [f"{gpu} ({count} visible), `bash benchmarks/gpu_check.sh`, every step under `timeout`.", "",
         "| step | outcome | command |", "|---|---|---|"]
for row in (work / "status.tsv").read_text().splitlines():
    step, rc, seconds, command = row.split("\t", 3)
    if rc == "skipped":  # the command column holds the reason
        lines.append(f"| {step} | skipped: {command} | - |")
        continue
    outcome = {"0": "ok", "124": f"timed out after {seconds} s"}.get(rc, f"failed (exit {rc})")
    if step == "halo_sync_2nccl" and rc not in ("0", "124") and count < 2:
        outcome += ": 2 nccl ranks need 2 GPUs"
    lines.append(f"| {step} | {outcome} | `{command.replace(str(work), '$WORK')}` |")
tables = work / "tables.md"
for block in rb.blocks(tables.read_text()) if tables.exists() else []:
    lines += ["", f"`{block.attrs['command'].replace(str(work), '$WORK')}`:", "", block.body]
runs, per_iteration = [], {}
for summary in sorted(work.glob("*/summary.json")):
    s = json.loads(summary.read_text())
    acc, final = s.get("accounting", {}), s.get("final", {})
    per_iteration[summary.parent.name] = acc.get("seconds_per_iteration", float("nan"))
    runs.append(f"| {summary.parent.name} | {s.get('status')} | {s.get('ranks', 1)} | "
                f"{per_iteration[summary.parent.name]:.4f} | {final.get('val_loss', float('nan')):.4f} |")
if runs:
    lines += ["", "Training runs (+experiment=quickstart, 20 iterations; the seconds per iteration include the "
              "first iteration's warm-up or compilation):", "",
              "| run | status | ranks | s / iteration | val_loss |", "|---|---|---:|---:|---:|", *runs]
if {"halo_sync_1process", "halo_sync_2nccl"} <= per_iteration.keys():
    lines += ["", "halo_sync, 2 nccl ranks against one process: "
              f"{per_iteration['halo_sync_2nccl'] / per_iteration['halo_sync_1process']:.2f}x the time per iteration."]
name = re.sub(r"[^a-z0-9.]+", "-", gpu.lower()).strip("-")
page = rb.ROOT / "docs" / "performance.md"
rb.write_block(page, "gpu_check", name, "\n".join(lines), stamp, "# Performance")
print(f"gpu_check: wrote the block gpu_check:{name} of {page.relative_to(rb.ROOT)}")
PY
