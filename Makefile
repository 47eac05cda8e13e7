# Two entry points: `make demo` (fine-tune the default pretrained BERT on BC5CDR-chem, print test F1)
# and `make test` (the whole test suite, cerebras.pytorch venv included). Both need only python3.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: demo test lint bench install cerebras-env clean

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
	TC_CEREBRAS_PYTHON="$$cb" $(BIN)/python -m pytest -q -ra --durations=15
	$(BIN)/ruff check tc tests examples bench data

lint: $(BIN)/.installed
	$(BIN)/ruff check tc tests examples bench data

bench: $(BIN)/.installed
	$(BIN)/python bench/bench_cpu.py

clean:
	rm -rf $(VENV) runs model_dir .pytest_cache
