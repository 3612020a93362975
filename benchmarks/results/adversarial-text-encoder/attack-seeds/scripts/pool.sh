#!/bin/bash
# The default's attack rates pooled over attack seeds 0-2 (seed 0: the eighteenth session's runs), from the repo root.
set -e
S=benchmarks/results/adversarial-text-encoder/spread-builder
D=benchmarks/results/adversarial-text-encoder/attack-seeds
python benchmarks/attack_pool.py $S/attack-all/c-s{0,1,2,3,4}.json $D/circle/atk-def-a{1,2}-s{13,024} --json $D/pooled-circle.json > $D/pooled-circle.md
python benchmarks/attack_pool.py $S/attack8/def-red-s{0,1,2}.json $D/red/atk-red-a{1,2} --json $D/pooled-red.json > $D/pooled-red.md
python benchmarks/attack_pool.py $S/attack-all/left-def.json $D/left/atk-left-a{1,2} --json $D/pooled-left.json > $D/pooled-left.md
