#!/bin/bash
# atk.sh NAME FOLDER TASK -> the attack only, from the starts neither order's unsafe_context 2 builds
cd /work/main
export OMP_NUM_THREADS=1
.venv/bin/python benchmarks/attack.py --tasks $3 --prompts 8 --variants '' --folders $1=$2 --spaces input,discrete --no-checks --held-out --held-out-context 2 --held-out-order both --out /tmp/s18/q/atk-$1 > /tmp/s18/q/$1.atk.log 2>&1
echo "done atk $1 $(date +%T)"
