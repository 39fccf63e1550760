#!/usr/bin/env bash
# The GPU checklist in one command, for a lent GPU machine with no weights and no network.
#
#   bash benchmarks/gpu/checklist.sh OUT_DIR SIZE PART...
#
# SIZE is `gpu` (a random Llama-3-8B and a random Llama-3.2-1B, both with the SmolLM2 tokenizer)
# or `tiny` (a 2-layer random Llama for every part: checks the script on a CPU). PARTs, in order:
#   train   LoRA SFT padded vs packed at 2048 tokens on a corpus set, one DPO step (8B), and
#           `accelerate launch` of `culturesim train` with examples/accelerate/1gpu.yaml (1B)
#   survey  benchmarks/survey_speed.py on the 8B model
#   sim     benchmarks/simulation.py on the 1B model at 64 dialogues
#   loop    `culturesim run examples/demo.yaml` with the 1B model in every role, without the probe
#           (its near-duplicate filter needs the 88 MB embedding model, too big to travel)
# Inputs travel in .gpu/ (ignored): tokenizer/ (SmolLM2's tokenizer files), corpus/ (sets made by
# `culturesim corpus`) and wvs/ (the survey folder). Each part's output goes to OUT_DIR/PART.log;
# a part that fails or runs out of its time is logged and the next one runs.
set -u
out=$1; size=$2; shift 2
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python=${PYTHON:-python3}
models=${MODELS:-/tmp/culturesim-gpu-models}
if [ "$size" = gpu ]; then big=llama3-8b; small=llama3.2-1b; else big=tiny; small=tiny; fi

model() {  # model ARCH -> prints its directory, writing it once
  local dir=$models/$1
  if [ ! -f "$dir/config.json" ]; then
    $python benchmarks/gpu/random_model.py --arch "$1" --tokenizer .gpu/tokenizer --out "$dir" >&2
  fi
  echo "$dir"
}

part() {  # part NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  local started=$SECONDS
  echo "== $name (limit ${limit}s)" | tee -a "$out/summary.txt"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  grep -E "tokens/s|packed/padded|^dpo|prompts/s|agreement|speedup|^\(|^a/|^model|Parameters|seconds|rows," \
    "$out/$name.log" | grep -v Warning | tail -20 | tee -a "$out/summary.txt"
  echo "-- $name: exit $rc after $((SECONDS - started)) s" | tee -a "$out/summary.txt"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/machine.txt" 2>&1
$python -c "import torch, transformers, trl, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__)" >>"$out/machine.txt" 2>&1
cat "$out/machine.txt"

for name in "$@"; do
  case $name in
    train)
      big_dir=$(model $big); small_dir=$(model $small)
      part train 110 $python benchmarks/gpu/train_padding.py --base "$big_dir" \
        --set .gpu/corpus/culturespa_joint --dpo-set .gpu/corpus/dpo --epochs 2 --batch-rows 32
      part accelerate 40 $python -m accelerate.commands.launch --config_file examples/accelerate/1gpu.yaml \
        -m culturesim.cli train .gpu/corpus/culturespa_joint --out /tmp/culturesim-accelerate \
        --base "$small_dir" --max-steps 5 --batch-size 8 ;;
    survey)
      big_dir=$(model $big)
      part survey 60 $python benchmarks/survey_speed.py --model "$big_dir" --survey-dir .gpu/wvs ;;
    sim)
      small_dir=$(model $small)
      part sim 90 $python benchmarks/simulation.py --model "$small_dir" --dialogues 64 --turns 4 \
        --baseline-dialogues 4 ;;
    loop)
      small_dir=$(model $small)
      rm -rf /tmp/culturesim-loop
      part loop 60 $python -m culturesim.cli run examples/demo.yaml --set out=/tmp/culturesim-loop \
        --set models.actor="$small_dir" --set models.prober="$small_dir" \
        --set models.judge="$small_dir" --set models.base="$small_dir" --set probe= \
        --set evaluate.survey_dir="$PWD/.gpu/wvs" --set corpus.embeddings=false
      cp /tmp/culturesim-loop/stages.jsonl "$out/loop-stages.jsonl" 2>/dev/null ;;
  esac
done
