# Two entry points: `make demo` (fine-tune the default pretrained BERT on BC5CDR-chem, print test F1)
# and `make test` (the whole test suite, cerebras.pytorch venv included). Both need only python3.
# `make check` is the inner loop: lint plus the in-process unit tests (no training, no subprocess).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

FAST := not slow and not cli and not trained and not cerebras
WORKERS ?= 2

.PHONY: demo test check lint bench coverage install cerebras-env clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[pretrained,deepspeed,serve,onnx,test]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/tc run --task token_cls --backend cpu

test: $(BIN)/.installed
	cb="$$(bash .ci/cerebras_env.sh | tail -n 1)" && test -x "$$cb" && \
	TC_CEREBRAS_PYTHON="$$cb" $(BIN)/python -m pytest -q -ra --durations=15 -n $(WORKERS) --dist loadscope
	$(BIN)/ruff check tc tests examples bench data

check: $(BIN)/.installed
	$(BIN)/ruff check tc tests examples bench data
	$(BIN)/python -m pytest -q -ra -m "$(FAST)"

coverage: $(BIN)/.installed
	cb="$$(bash .ci/cerebras_env.sh | tail -n 1)" && test -x "$$cb" && \
	TC_CEREBRAS_PYTHON="$$cb" COVERAGE_FILE="$$PWD/.coverage" \
	$(BIN)/python -m coverage run -m pytest -q -n $(WORKERS) --dist loadscope
	COVERAGE_FILE="$$PWD/.coverage" $(BIN)/python -m coverage combine -q
	COVERAGE_FILE="$$PWD/.coverage" $(BIN)/python -m coverage report --sort=cover

lint: $(BIN)/.installed
	$(BIN)/ruff check tc tests examples bench data

bench: $(BIN)/.installed
	$(BIN)/python bench/bench_cpu.py

clean:
	rm -rf $(VENV) runs model_dir .pytest_cache
