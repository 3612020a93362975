#!/bin/bash
# full.sh TASK K N: the attack from every forget caption neither order's unsafe_context 2 builds (N of them), default and spread at seed K
cd /work/main
export OMP_NUM_THREADS=1
T=$1; K=$2; N=$3
case $T in circle-to-square) D=c;; *) D=$T;; esac
.venv/bin/python benchmarks/attack.py --tasks $T --prompts $N --variants '' --folders def-s$K=/tmp/s16/m/uc2-$D-s$K,spb-s$K=/tmp/s18/m/sp-$D-s$K --spaces input,discrete --no-checks --held-out --held-out-context 2 --held-out-order both --out /tmp/s18/q/full-$D-s$K > /tmp/s18/q/full-$D-s$K.log 2>&1
echo "done full $D $K $(date +%T)"
