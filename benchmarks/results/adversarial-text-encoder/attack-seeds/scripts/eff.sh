#!/bin/bash
# eff.sh TASK OUT NAME=PATH,...
cd /work/main
export OMP_NUM_THREADS=1
.venv/bin/python benchmarks/efficacy.py --steps 10 --seeds 0,1 --tasks $1 --variants '' --folders $3 --hold-out-unsafe-context 2 --hold-out-order both --out /tmp/s20/q/$2 > /tmp/s20/q/$2.log 2>&1
echo "done eff $2 $(date +%T)"
