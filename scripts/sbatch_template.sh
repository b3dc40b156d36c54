#!/usr/bin/env bash
# A Slurm job array that runs the shards of one neuronimp study without submitit: one array task per shard.
# Copy it, edit the #SBATCH lines and the three variables below, then:
#
#   sbatch scripts/sbatch_template.sh                               # N shards, N = the --array size
#   sbatch --dependency=afterok:<jobid> --wrap "neuronimp merge <out>"   # merge once every task succeeded
#
# (`neuronimp <command> --launcher slurm --shards N` does the same through submitit, waits, and merges.)
# Each task writes <out>/<table>.shard-<i>-of-<N>.csv atomically; a task that is killed or times out resumes
# from its last finished batch when resubmitted (`sbatch --array=<i> ...` re-runs only task i). Tasks already
# finished are cheap to re-run: all their batches are on disk.
#
#SBATCH --job-name=neuronimp-score
#SBATCH --array=0-3%4                 # shards 0..3, at most 4 at a time; SHARDS below must be 4
#SBATCH --partition=gpu               # your partition
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=02:00:00
#SBATCH --output=slurm-%A_%a.out      # one log per shard
##SBATCH --account=your_account
##SBATCH --qos=normal
set -euo pipefail

COMMAND=${COMMAND:-score}                       # score | ablate | delete | select | filters
CONFIG=${CONFIG:-configs/your_study.yaml}
OUT=${OUT:-results/your_study}                  # runner.out; the same for every shard
SHARDS=${SHARDS:-4}                             # N of --shard i/N: the full array size (not this submission's)
VENV=${VENV:-.venv}                             # a virtual environment with neuronimp installed

cd "${SLURM_SUBMIT_DIR:-.}"
# module load cuda   # whatever your cluster needs
source "$VENV/bin/activate"

N=$SHARDS
I=${SLURM_ARRAY_TASK_ID:?run this with sbatch --array=0-<SHARDS-1>}
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

echo "neuronimp $COMMAND shard $I/$N on $(hostname), config $CONFIG, out $OUT"
exec neuronimp "$COMMAND" --config "$CONFIG" --set "runner.out=$OUT" --set runner.progress=false --shard "$I/$N"
