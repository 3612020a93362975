#!/bin/bash
# atkseed.sh SEED OUT NAME=PATH,...  -> attack from every unseen circle caption at attack seed SEED
cd /work/main
export OMP_NUM_THREADS=1
.venv/bin/python benchmarks/attack.py --tasks circle-to-square --prompts 100 --seed $1 --variants '' --folders $3 --spaces input,discrete --no-checks --held-out --held-out-context 2 --held-out-order both --out /tmp/s20/q/$2 > /tmp/s20/q/$2.log 2>&1
echo "done atk $2 $(date +%T)"
