PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test lint clean bench-one-photo bench-folder bench-model bench-int8 bench-embed bench-ray \
	bench-train bench-options bench-seed-claim bench-explain bench-startup

install:  ## create .venv and install the package (editable) with every extra and the test tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[export,parquet,ray,test]'
	@# the browser the report-page tests open pages in (tests/browser.py): Debian's chromium, when
	@# missing and apt-get can install it (as root); otherwise those tests skip, saying why
	@if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
		|| { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
		>/dev/null 2>&1; } || echo "chromium not installed: the report-page tests will skip"; fi

test:  ## run the test suite
	$(BIN)/python -m pytest -q

lint:
	$(BIN)/ruff check xception_cli tests benchmarks examples

# Benchmarks run from a bare clone: they make their own weights (official layout, seeded), photos
# (benchmarks/make_corpus.py) and baseline (benchmarks/naive_keras.py), cached in bench-out/.
# Extra options after the defaults, e.g.  make bench-folder BENCH_ARGS="--n 16"
BENCH_ARGS ?=

bench-one-photo:  ## `xception predict cat.jpg` vs the naive Keras script, whole command, cold first run + warm median
	$(BIN)/python benchmarks/one_photo.py --repeat 5 $(BENCH_ARGS)

bench-folder:  ## 64 12-MP photos: each precision the CPU has vs its own floor and the naive script (BENCH_ARGS="--n 16")
	$(BIN)/python benchmarks/folder.py --n 64 $(BENCH_ARGS)

bench-startup:  ## what predict's fixed cost per run is made of: imports, reading the compiled network, the first inference
	$(BIN)/python benchmarks/startup.py $(BENCH_ARGS)

bench-model:  ## model call per runtime vs keras.applications.Xception().predict, one process
	$(BIN)/python benchmarks/model_call.py $(BENCH_ARGS)

bench-int8:  ## INT8 IR vs float32 IR vs the .h5 path, whole command (BENCH_ARGS="--images 16 --repeat 1")
	$(BIN)/python benchmarks/int8.py $(BENCH_ARGS)

bench-embed:  ## xception embed next to xception predict, whole command
	$(BIN)/python benchmarks/embed.py $(BENCH_ARGS)

bench-ray:  ## predict --ray vs the local path, whole command
	$(BIN)/python benchmarks/ray_path.py $(BENCH_ARGS)

bench-train:  ## xception train vs the Keras transfer-learning recipe, same data and epochs
	$(BIN)/python benchmarks/train.py $(BENCH_ARGS)

bench-options:  ## OpenVINO runtime options (hints, streams, cache) vs the folded TensorFlow call
	$(BIN)/python benchmarks/runtime_options.py $(BENCH_ARGS)

bench-seed-claim:  ## Xception vs Inception-v3, inference and a training step (BENCH_ARGS=ITERATIONS)
	VENV=$(VENV) bash benchmarks/seed_claim.sh $(BENCH_ARGS)

bench-explain:  ## xception explain vs xception predict on one folder, Keras' Grad-CAM recipe beside
	$(BIN)/python benchmarks/explain.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
