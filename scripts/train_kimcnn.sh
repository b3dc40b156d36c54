#!/usr/bin/env bash
# Full-size Kim (2014) CNN runs: long (CPU: 25 SST-2 epochs took 864 s on 2 shared cores), so not part of `make test`.
#   scripts/train_kimcnn.sh sst2       train CNN-rand on SST-2 (25 epochs, best dev epoch kept; dev = 10% of
#                                      the training file, test = the official dev file when there is no test file)
#   scripts/train_kimcnn.sh mr         train CNN-rand on MR, fixed 90/10 split (fold 0), best dev epoch kept
#                                      (dev = 10% of the training folds)
#   scripts/train_kimcnn.sh mr-cv      10-fold cross-validation on MR (same dev protocol in each fold);
#                                      prints the mean test accuracy
#   scripts/train_kimcnn.sh analysis   filter signs + negation (and the target=predicted and training-lexicon
#                                      variants), then the ablation and selection studies (SST-2)
#   scripts/train_kimcnn.sh delete     Study 2 (cumulative deletion over label corruption) on SST-2 networks
#   scripts/train_kimcnn.sh all        sst2, then analysis, then delete
# Extra arguments are passed to every neuronimp call, e.g. --set train.epochs=10.
# Make target (for the lead):
#   kimcnn:  ; scripts/train_kimcnn.sh all
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${NEURONIMP_SENTIMENT_DIR:-}" ] && [ -d ../shared/data/sentiment ]; then  # offline dev (as the Makefile)
  export NEURONIMP_SENTIMENT_DIR="$(cd ../shared/data/sentiment && pwd)"
fi
NI=${NEURONIMP:-neuronimp}
command -v "$NI" >/dev/null 2>&1 || NI=".venv/bin/neuronimp"
what=${1:-sst2}
shift || true
mkdir -p results/logs

timed() {  # timed LOG CMD...: run, tee the output to results/logs/LOG, print the wall time
  local log=$1; shift
  local t0=$SECONDS
  "$@" 2>&1 | tee "results/logs/$log"
  echo "[$log] wall time: $((SECONDS - t0)) s" | tee -a "results/logs/$log"
}

case "$what" in
  sst2) timed train_kimcnn_sst2.log "$NI" train -c configs/kimcnn_sst2.yaml "$@" ;;
  mr)   timed train_kimcnn_mr.log "$NI" train -c configs/kimcnn_mr.yaml "$@" ;;
  mr-cv)
    for k in 0 1 2 3 4 5 6 7 8 9; do
      timed "train_kimcnn_mr_fold$k.log" "$NI" train -c configs/kimcnn_mr.yaml --set "data.options.cv_fold=$k" \
        --set "train.checkpoint=results/checkpoints/kimcnn_mr_fold$k.pt" "$@"
    done
    python3 - <<'PY'
import json, statistics
accs = [json.load(open(f"results/checkpoints/kimcnn_mr_fold{k}.metrics.json"))["final"]["test_acc"] for k in range(10)]
print("MR 10-fold test accuracy: " + " ".join(f"{a:.4f}" for a in accs))
print(f"mean {statistics.mean(accs):.4f}  sd {statistics.stdev(accs):.4f}  (Kim 2014, CNN-rand: 76.1)")
PY
    ;;
  analysis)
    timed filters_kimcnn_sst2.log "$NI" filters -c configs/kimcnn_sst2.yaml "$@"
    timed filters_kimcnn_sst2_predicted.log "$NI" filters -c configs/kimcnn_sst2.yaml \
      --set sentiment.target=predicted --set runner.out=results/kimcnn_sst2_predicted "$@"
    timed filters_kimcnn_sst2_trainwords.log "$NI" filters -c configs/kimcnn_sst2.yaml \
      --set sentiment.sentiment_words=train --set runner.out=results/kimcnn_sst2_trainwords "$@"
    timed explain_kimcnn_sst2.log "$NI" explain -c configs/kimcnn_sst2.yaml --unit 17 --index 3 "$@"
    timed ablate_kimcnn_sst2.log "$NI" ablate -c configs/kimcnn_sst2_ablate.yaml "$@"
    timed select_kimcnn_sst2.log "$NI" select -c configs/kimcnn_sst2_select.yaml "$@"
    ;;
  delete) timed delete_kimcnn_sst2.log "$NI" delete -c configs/kimcnn_sst2_delete.yaml "$@" ;;
  all) "$0" sst2 "$@"; "$0" analysis "$@"; "$0" delete "$@" ;;
  *) echo "usage: $0 sst2|mr|mr-cv|analysis|delete|all [--set key=value ...]" >&2; exit 2 ;;
esac
