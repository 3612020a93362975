#!/bin/bash
# apply.sh NAME PAIRS SETTINGS
cd /work/main
export OMP_NUM_THREADS=1
M=/tmp/s20/m/$1
[ -f $M/vidunlearn.json ] || /usr/bin/time -f "apply %e s" .venv/bin/vidunlearn apply --model models/shapes-wan --pairs pairs/bench/$2 --adversarial 200 --adversarial-settings $3 --no-collateral --out $M > /tmp/s20/q/$1.apply.log 2>&1
echo "done $1 $(date +%T)"
