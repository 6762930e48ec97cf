#!/usr/bin/env bash
# Reproduce the two models shipped in mer_plugin/models (see docs/model.md):
#   default  mer-4q 3: the four taggers of the musicnn wheel fused (MSD and MagnaTagATune
#            musicnn and vgg), segment head + song embedding classifier (C 0.003)
#   fast     mer-4q 2: MSD-musicnn alone, segment head + song embedding classifier (C 0.01);
#            about a third of the default's backbone arithmetic (`mer tag --model fast`)
# Each: 5-fold cross-validation on 4q-dev grouped by artist (its numbers go into the card),
# then the configuration trained on all 600 clips. With an empty cache both took 66.5 minutes
# on 2 CPU cores (docs/model.md; log-mel and 3 views of frozen embeddings of each backbone
# dominate); the weights are the same bytes on every run on one machine (fixed seeds), not
# across CPUs: another CPU's float kernels move the embeddings' last bits (docs/model.md).
#
#   tools/make_default_model.sh [DATA_DIR] [MODEL...]  # default: ../shared/data/4q-dev default fast
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/4q-dev}
shift || true
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(default fast)
mkdir -p build
licence="4Q audio emotion dataset (Panda, Malheiro & Paiva 2018): clips published without a \
licence, used here for research; the model ships weights learned from them, not the audio"

# build_model FOLDER VERSION BACKBONE C METHODS: the choice of each is in docs/results.md
build_model() {
  local folder=$1 version=$2 backbone=$3 c=$4 methods=$5
  local report=build/$folder-model-eval.json
  local common=(--group-by Artist --backbone "$backbone" --seed 0
    --set song_embedding_c="$c" --quiet)
  mer eval "$data" --folds 5 --methods "$methods" --json "$report" "${common[@]}"
  mer train "$data" --method segment --name mer-4q --version "$version" --metrics "$report" \
    --data-licence "$licence" --out "mer_plugin/models/$folder" "${common[@]}"
}

for model in "${models[@]}"; do
  case $model in
    # clip is left out of the default's evaluation: its whole-clip embeddings of four
    # backbones would double the run, and clip trailed segment by 0.04 on MSD-musicnn
    default) build_model default 3 musicnn-msd+mtt+vgg-msd+mtt 0.003 segment,sssl ;;
    fast) build_model fast 2 musicnn-msd 0.01 clip,segment,sssl ;;
    *) echo "unknown model $model (default, fast)" >&2; exit 2 ;;
  esac
done
