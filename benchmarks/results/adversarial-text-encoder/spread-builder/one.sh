#!/bin/bash
# one.sh NAME PAIRS CONCEPT TASK SETTINGS HOC -> apply, drift, eval, attack (held out: both orders' unsafe_context builds)
set -e
cd /work/main
export OMP_NUM_THREADS=1
N=$1; P=$2; C=$3; T=$4
M=/tmp/s18/m/$N
cp "$5" /tmp/s18/q/$N.yaml
if [ ! -f $M/vidunlearn.json ]; then
  /usr/bin/time -f "apply %e s" .venv/bin/vidunlearn apply --model models/shapes-wan --pairs pairs/bench/$P --adversarial ${STEPS:-200} --adversarial-settings /tmp/s18/q/$N.yaml --no-collateral --out $M > /tmp/s18/q/$N.apply.log 2>&1
fi
.venv/bin/python benchmarks/encoder_drift.py $M --json /tmp/s18/q/$N.drift.json > /tmp/s18/q/$N.drift.log 2>&1
.venv/bin/vidunlearn eval --model $M --concept $C --steps 10 --retain 1000 --paraphrase 2 --out /tmp/s18/q/eval-$N > /tmp/s18/q/$N.eval.log 2>&1
.venv/bin/python benchmarks/attack.py --tasks $T --prompts 8 --variants '' --folders $N=$M --spaces input,discrete --no-checks --held-out --held-out-context ${6:-0} --held-out-order both --out /tmp/s18/q/atk-$N > /tmp/s18/q/$N.atk.log 2>&1
echo "done $N $(date +%T)"
