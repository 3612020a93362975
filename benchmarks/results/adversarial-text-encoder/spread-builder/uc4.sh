#!/bin/bash
cd /work/main
export OMP_NUM_THREADS=1
N=uc4-c-s$1; M=/tmp/s18/m/$N
/usr/bin/time -f "apply %e s" .venv/bin/vidunlearn apply --model models/shapes-wan --pairs pairs/bench/circle-to-square.yaml --adversarial 200 --adversarial-settings /tmp/s18/q/uc4-s$1.yaml --no-collateral --out $M > /tmp/s18/q/$N.apply.log 2>&1
.venv/bin/vidunlearn eval --model $M --concept circle --steps 10 --retain 1000 --paraphrase 2 --out /tmp/s18/q/eval-$N > /tmp/s18/q/$N.eval.log 2>&1
.venv/bin/python benchmarks/attack.py --tasks circle-to-square --prompts 100 --variants '' --folders $N=$M --spaces input,discrete --no-checks --held-out --held-out-context 4 --held-out-order both --out /tmp/s18/q/full-$N > /tmp/s18/q/full-$N.log 2>&1
echo "done $N $(date +%T)"
