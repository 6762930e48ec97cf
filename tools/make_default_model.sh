#!/usr/bin/env bash
# Reproduce the two models shipped in mer_plugin/models (see docs/model.md):
#   default  mer-4q 5: the four taggers of the musicnn wheel fused (MSD and MagnaTagATune
#            musicnn and vgg), five segment heads merged into one (their logits averaged) +
#            song embedding classifier (C 0.003), trained on the 4Q clips and VGMIDI's 204
#            game-music phrases rendered for piano, at half a 4Q clip's weight
#   fast     mer-4q 2: MSD-musicnn alone, segment head + song embedding classifier (C 0.01);
#            about a third of the default's backbone arithmetic (`mer tag --model fast`)
# Each: 5-fold cross-validation on 4q-dev grouped by artist (its numbers go into the card),
# then the configuration trained on all 600 clips. With an empty cache both took 66.5 minutes
# on 2 CPU cores before the default took the phrases (docs/model.md; log-mel and 3 views of
# frozen embeddings of each backbone dominate); the weights are the same bytes on every run
# on one machine (fixed seeds), not across CPUs: another CPU's float kernels move the
# embeddings' last bits (docs/model.md). The default renders the VGMIDI phrases with
# FluidSynth (Debian: `apt install fluidsynth fluid-soundfont-gm`; mer_plugin/builtin/midi.py).
#
#   tools/make_default_model.sh [DATA_DIR] [MODEL...]  # default: ../shared/data/4q-dev default fast
#   VGMIDI=FOLDER (default: vgmidi beside DATA_DIR) names VGMIDI's folder
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/4q-dev}
shift || true
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(default fast)
mkdir -p build
licence="4Q audio emotion dataset (Panda, Malheiro & Paiva 2018): clips published without a \
licence, used here for research; the model ships weights learned from them, not the audio"
vgmidi_licence="; VGMIDI (Ferreira & Whitehead 2019): piano phrases published without a \
licence, used here for research, rendered to audio for training; neither ships"
vgmidi=${VGMIDI:-$(dirname "$data")/vgmidi}
phrases=build/midi/vgmidi/manifest.csv

# build_model FOLDER VERSION BACKBONE C METHODS LICENCE [OPTION...]: the choice of each is in
# docs/results.md; the options go to both mer eval and mer train
build_model() {
  local folder=$1 version=$2 backbone=$3 c=$4 methods=$5 data_licence=$6
  shift 6
  local report=build/$folder-model-eval.json
  local common=(--group-by Artist --backbone "$backbone" --seed 0
    --set song_embedding_c="$c" --quiet "$@")
  mer eval "$data" --folds 5 --methods "$methods" --json "$report" "${common[@]}"
  mer train "$data" --method segment --name mer-4q --version "$version" --metrics "$report" \
    --data-licence "$data_licence" --out "mer_plugin/models/$folder" "${common[@]}"
}

for model in "${models[@]}"; do
  case $model in
    # The default's evaluation is segment's alone: sssl on this recipe trailed it on fold
    # seeds 30-34 at twenty times the training time, and clip's whole-clip embeddings of
    # four backbones would double the run (docs/results.md; the fast model's card has all three)
    default)
      [ -f "$phrases" ] || python tools/midi_datasets.py vgmidi "$vgmidi" "$(dirname "$phrases")"
      build_model default 5 musicnn-msd+mtt+vgg-msd+mtt 0.003 segment \
        "$licence$vgmidi_licence" --add "$phrases" --set added_weight=0.5 --set heads=5 ;;
    fast) build_model fast 2 musicnn-msd 0.01 clip,segment,sssl "$licence" ;;
    *) echo "unknown model $model (default, fast)" >&2; exit 2 ;;
  esac
done
