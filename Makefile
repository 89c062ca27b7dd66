PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test lint bench-folder bench-model bench-one-photo clean

install:  ## create .venv and install the package (editable) with every extra and the test tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[export,parquet,ray,test]'

test:  ## run the test suite
	$(BIN)/python -m pytest -q

lint:
	$(BIN)/ruff check xception_cli tests benchmarks examples

bench-folder:  ## whole-command comparison with the naive Keras baseline (see benchmarks/RESULTS.md)
	$(BIN)/python benchmarks/folder.py

bench-one-photo:  ## `xception predict cat.jpg` vs the naive Keras script on one photo, whole command
	$(BIN)/python benchmarks/one_photo.py --repeat 5

bench-model:  ## model call per runtime vs keras.applications.Xception().predict
	$(BIN)/python benchmarks/model_call.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
