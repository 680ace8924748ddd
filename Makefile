PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/colorization preprocess data/samples/photos --dataset data/datasets/samples --size 128 --rows-per-shard 16

test: $(STAMP)
	$(BIN)/pytest

clean:
	rm -rf data/datasets data/models data/colorized
