#!/bin/bash
# atk.sh TASK OUT NAME=PATH,...  -> attack from every unseen caption (held out: both orders' builds)
cd /work/main
export OMP_NUM_THREADS=1
.venv/bin/python benchmarks/attack.py --tasks $1 --prompts 100 --variants '' --folders $3 --spaces input,discrete --no-checks --held-out --held-out-context 2 --held-out-order both --out /tmp/s20/q/$2 > /tmp/s20/q/$2.log 2>&1
echo "done atk $2 $(date +%T)"
