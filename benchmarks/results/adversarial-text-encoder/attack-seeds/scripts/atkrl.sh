#!/bin/bash
# red and the motion from every unseen caption at attack seed $1
cd /work/main
export OMP_NUM_THREADS=1
for t in red left; do
  if [ $t = red ]; then F=def-red-s0=/tmp/s16/m/uc2-red-s0,def-red-s1=/tmp/s16/m/uc2-red-s1,def-red-s2=/tmp/s16/m/uc2-red-s2; else F=def-s0=/tmp/s16/m/uc2-left-s0,def-s1=/tmp/s16/m/uc2-left-s1,def-s2=/tmp/s16/m/uc2-left-s2; fi
  .venv/bin/python benchmarks/attack.py --tasks $t --prompts 100 --seed $1 --variants '' --folders $F --spaces input,discrete --no-checks --held-out --held-out-context 2 --held-out-order both --out /tmp/s20/q/atk-$t-a$1 > /tmp/s20/q/atk-$t-a$1.log 2>&1
  echo "done $t $(date +%T)"
done
