#!/usr/bin/env bash
# The checks a CPU cannot make, as one script for a lent GPU machine (sized for 10 minutes on
# one H100; docs/performance.md "On a GPU", docs/results.md "The whole network learning").
#
#   tools/gpu_check.sh prepare ../shared/data/4q-dev   # here: fills .gpu/ (git-ignored)
#   tools/gpu_check.sh run                             # there, .gpu carried; results in $OUT
#
# prepare: the wheels the GPU machine's image lacks (its Python is 3.12; PyAV is not
# needed, the files there are Opus and FLAC), and the dataset re-encoded to 16 kHz mono
# Opus at 16 kbps: what fits the 64 MiB a call may carry (the models hear 16 kHz; numbers
# from these copies are compared with each other, not with the CPU tables).
# run:
#   1. `mer tag` on 40 four-minute FLAC tracks (44.1 kHz stereo) joined from the clips,
#      --device cuda, then --device cpu on the same machine's cores; GPU utilisation
#      sampled by nvidia-smi every 200 ms; the two runs' quadrants compared;
#   2. `mer eval` with the whole network learning (--finetune 3, CUDA, bfloat16 autocast),
#      clip, segment and sssl on the same folds with docs/results.md's fine-tuning
#      settings, and the GMM check in that regime; one report per method, each under a
#      time limit, so that a slow one cannot cost the others.
# MER_GPU_CHECK_DEVICE=cpu MER_GPU_CHECK_QUICK=1 OUT=/tmp/out tools/gpu_check.sh run
# rehearses it here in a few minutes (2 tracks, 1 fold, 1 epoch).
set -euo pipefail
cd "$(dirname "$0")/.."

prepare() {
  local data=${1:?usage: tools/gpu_check.sh prepare DATASET}
  grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >>.git/info/exclude
  rm -rf .gpu && mkdir -p .gpu/whl .gpu/data
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu/whl soundfile soxr mutagen cffi pycparser
  cp "$data/annotations.csv" .gpu/data/
  local clip out
  for clip in "$data"/*/*.*; do
    [[ $clip == */annotations.csv ]] && continue
    out=.gpu/data/${clip#"$data"/}
    mkdir -p "$(dirname "$out")"
    ffmpeg -loglevel error -nostdin -y -i "$clip" -ac 1 -ar 16000 -c:a libopus -b:a 16k \
      "${out%.*}.opus"
  done
  du -sh .gpu
}

MER=(python3 -c 'import sys; from mer_plugin.cli import main; sys.argv[0] = "mer"; main()')

run() {
  : "${OUT:?run it on the GPU machine, where OUT is set}"
  local device=${MER_GPU_CHECK_DEVICE:-cuda} quick=${MER_GPU_CHECK_QUICK:-}
  python3 -c 'import soundfile, soxr, mutagen' 2>/dev/null ||
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
  local cache=/tmp/mer-gpu-cache  # each run its own: no results cache shared between them
  command -v nvidia-smi >/dev/null && nvidia-smi | tee "$OUT/nvidia-smi.txt"
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'

  echo "== 1. mer tag, $device against the CPU ($(nproc) cores)"
  local tracks=/tmp/mer-gpu-tracks
  python3 tools/gpu_check_tracks.py .gpu/data "$tracks" "${quick:+2}"
  env MER_CACHE_DIR=$cache/warm "${MER[@]}" predict "$tracks/track00.flac" >/dev/null
  local smi=
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader \
      -lms 200 >"$OUT/gpu_utilisation.csv" &
    smi=$!
  fi
  timed "$OUT/tag_$device.txt" env MER_CACHE_DIR="$cache/$device" "${MER[@]}" tag "$tracks" \
    --device "$device" --force -q --report "$OUT/tag_$device.json" || true
  [[ -n $smi ]] && kill "$smi"
  timed "$OUT/tag_cpu.txt" env MER_CACHE_DIR="$cache/cpu" "${MER[@]}" tag "$tracks" \
    --device cpu --force -q --report "$OUT/tag_cpu.json" || true
  python3 tools/gpu_check_tracks.py --compare "$OUT/tag_$device.json" "$OUT/tag_cpu.json" \
    "$OUT/gpu_utilisation.csv" | tee "$OUT/tag_summary.txt"

  echo "== 2. the whole network learning (--finetune 3), $device"
  local settings=(--set epochs=8 --set warmup_epochs=2 --set rampup_epochs=3
    --set song_embedding_c=0.01 --set song_classifier=false --set clip_epochs=8)
  local limit=120 folds=() data=.gpu/data
  if [[ -n $quick ]]; then  # 8 clips a class, 1 fold, 1 epoch: the plumbing, not a result
    settings+=(--set epochs=1 --set warmup_epochs=1 --set clip_epochs=1)
    folds=(--run-folds 1) limit=300 data=/tmp/mer-gpu-quick
    rm -rf "$data" && mkdir -p "$data" && cp .gpu/data/annotations.csv "$data"
    for class in .gpu/data/*/; do
      mkdir -p "$data/$(basename "$class")"
      # sed reads to the end: head's early exit could kill sort (SIGPIPE) under pipefail
      find "$class" -type f | sort | sed -n 1,8p | xargs cp -t "$data/$(basename "$class")"
    done
  fi
  local method noise
  for method in segment sssl clip; do
    noise=''
    [[ $method == segment ]] && noise=0.2,0.4
    timed "$OUT/eval_$method.txt" timeout "$limit" env MER_CACHE_DIR="$cache/eval" \
      "${MER[@]}" eval "$data" --group-by Artist \
      --methods "$method" --finetune 3 --device "$device" --noise "$noise" --no-references \
      "${folds[@]}" "${settings[@]}" --json "$OUT/eval_$method.json" -q || true
  done
}

timed() {  # timed LOG COMMAND...: the command's output and wall seconds, in LOG and on screen
  local log=$1 start=$SECONDS status=0
  shift
  "$@" 2>&1 | tee "$log" || status=$?
  echo "wall $((SECONDS - start)) s, exit $status" | tee -a "$log"
  return "$status"
}

case ${1:-} in
prepare) prepare "${@:2}" ;;
run) run ;;
*) echo "usage: tools/gpu_check.sh prepare DATASET | run" >&2 && exit 2 ;;
esac
