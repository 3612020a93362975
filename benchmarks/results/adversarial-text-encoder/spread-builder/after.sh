#!/bin/bash
# margins (3 sampling seeds) and efficacy (held-out both orders) for the spread builder against the default
cd /work/main
export OMP_NUM_THREADS=1
R=benchmarks/results/adversarial-text-encoder/unsafe-context
C=spb-s0=/tmp/s18/m/sp-c-s0,spb-s1=/tmp/s18/m/sp-c-s1,spb-s2=/tmp/s18/m/sp-c-s2,spb-s3=/tmp/s18/m/sp-c-s3,spb-s4=/tmp/s18/m/sp-c-s4
for S in 0 100 200; do
  .venv/bin/python benchmarks/shape_margin.py --folders $C --concept circle --seed $S --json /tmp/s18/q/circle-seed$S-h.json > /tmp/s18/q/sm-c-$S.log 2>&1 &
  for T in red left; do
    F=""
    for k in 0 1 2; do F="$F,def-s$k=/tmp/s16/m/uc2-$T-s$k,spb-s$k=/tmp/s18/m/sp-$T-s$k"; done
    .venv/bin/python benchmarks/shape_margin.py --folders ${F#,} --concept $T --seed $S --json /tmp/s18/q/$T-seed$S.json > /tmp/s18/q/sm-$T-$S.log 2>&1
  done
  wait
done
echo "margins done $(date +%T)"
DC=""; for k in 0 1 2 3 4; do DC="$DC,def-s$k=/tmp/s16/m/uc2-c-s$k,spb-s$k=/tmp/s18/m/sp-c-s$k"; done
.venv/bin/python benchmarks/efficacy.py --steps 10 --seeds 0,1 --tasks circle-to-square --variants '' --folders ${DC#,} --hold-out-unsafe-context 2 --hold-out-order both --out /tmp/s18/q/eff-c > /tmp/s18/q/eff-c.log 2>&1 &
for T in red left; do
  F=""; for k in 0 1 2; do F="$F,def-s$k=/tmp/s16/m/uc2-$T-s$k,spb-s$k=/tmp/s18/m/sp-$T-s$k"; done
  .venv/bin/python benchmarks/efficacy.py --steps 10 --seeds 0,1 --tasks $T --variants '' --folders ${F#,} --hold-out-unsafe-context 2 --hold-out-order both --out /tmp/s18/q/eff-$T > /tmp/s18/q/eff-$T.log 2>&1
done
wait
echo "efficacy done $(date +%T)"
