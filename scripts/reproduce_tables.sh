#!/usr/bin/env bash
# `make reproduce-tables`: every study config that runs offline, then figures and a report of results/.
# Offline: digits, Fashion-MNIST (Debian's dataset-fashion-mnist), SST-2 (../shared/data/sentiment, else
# `neuronimp data fetch sst2` once).
# ImageNet configs run too when IMAGENET_DIR points at a validation folder (one subfolder per WordNet id)
# and the pretrained weights can be fetched (online) or are given as files:
#   IMAGENET_DIR=/data/imagenet/val GOOGLENET_WEIGHTS=/ckpt/googlenet.pt make reproduce-tables
# Long on a CPU (hours, mostly the Kim CNN and the deletion networks); every step resumes when re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${NEURONIMP_SENTIMENT_DIR:-}" ] && [ -d ../shared/data/sentiment ]; then  # offline dev (as the Makefile)
  export NEURONIMP_SENTIMENT_DIR="$(cd ../shared/data/sentiment && pwd)"
fi
NI=${NEURONIMP:-.venv/bin/neuronimp}
FMNIST=${FMNIST:-/usr/share/datasets/fashion-mnist}
step() { echo; echo "== $*"; "$@"; }

step "$NI" train --config configs/digits_train.yaml
step "$NI" ablate --config configs/digits_ablate.yaml
step "$NI" score --config configs/digits_score.yaml
if [ -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then
  [ -f results/checkpoints/fashion_cnn.pt ] || step "$NI" train --config configs/fashion_cnn_train.yaml
  step "$NI" ablate --config configs/fashion_ablate.yaml
  step "$NI" delete --config configs/fashion_delete.yaml
  step "$NI" delete --config configs/fashion_delete_cnn.yaml
  for task in footwear tops random; do step "$NI" select --config "configs/fashion_select_$task.yaml"; done
  step "$NI" shapley --config configs/fashion_shapley_fc.yaml
  step "$NI" shapley --config configs/fashion_shapley_conv.yaml
else
  echo "Fashion-MNIST not found in $FMNIST (make data): its studies are skipped"
fi
[ -f results/checkpoints/kimcnn_sst2.pt ] || step "$NI" train --config configs/kimcnn_sst2.yaml
step "$NI" filters --config configs/kimcnn_sst2.yaml
step "$NI" ablate --config configs/kimcnn_sst2_ablate.yaml
step "$NI" select --config configs/kimcnn_sst2_select.yaml
step "$NI" delete --config configs/kimcnn_sst2_delete.yaml
step "$NI" shapley --config configs/kimcnn_sst2_shapley.yaml
if [ -n "${IMAGENET_DIR:-}" ]; then
  W=()
  [ -n "${GOOGLENET_WEIGHTS:-}" ] && W=(--set "model.weights=$GOOGLENET_WEIGHTS")
  R=(--set "data.options.root=$IMAGENET_DIR")
  step "$NI" ablate --config configs/inception_mixed4d.yaml "${R[@]}" "${W[@]}"
  step "$NI" score --config configs/googlenet_score.yaml "${R[@]}" "${W[@]}"
  step "$NI" select --config configs/imagenet_water_vessels.yaml "${R[@]}" "${W[@]}"
  step "$NI" select --config configs/imagenet_random_labels.yaml "${R[@]}" "${W[@]}"
  step "$NI" ablate --config configs/inception_v3_mixed6e.yaml "${R[@]}"
else
  echo "IMAGENET_DIR not set: the ImageNet configs are skipped"
fi
step "$NI" report results
