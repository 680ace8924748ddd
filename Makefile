PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test clean server worker deploy stop status

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The demo learns from the bundled photos at a small size and width: a few minutes on 2 CPU cores.
# 20% validation: 4 of the 34 photos (10% would hold out 1), scored at the end of training into the card.
# WEIGHTS=auto uses ImageNet Xception when it can be downloaded (or is cached), else random weights, loudly.
WEIGHTS ?= auto
demo: $(STAMP)
	$(BIN)/colorization pipeline data/samples/photos --dataset data/datasets/samples \
		--model-dir data/models/samples --size 128 --width 0.5 --epochs 25 --batch-size 8 --weights $(WEIGHTS) --resume \
		--validation-percent 20
	$(BIN)/colorization colorize data/samples/archive data/colorized/samples --model data/models/samples
	@echo
	@echo "Coloured photos:  data/colorized/samples/ (the grey originals are in data/samples/archive/)"
	@echo "Before/after:     data/colorized/samples/.colorize/gallery.html"
	@echo "Model and card:   data/models/samples/model.keras, data/models/samples/model.json"

test: $(STAMP)
	$(BIN)/pytest

# Run it as a service (README): server, workers and deployments in the background, state under .state/.
server worker deploy stop status: $(STAMP)
	$(BIN)/python -m flows.service $@

clean:
	rm -rf data/datasets data/models data/colorized data/evaluations
