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
# 20% validation: 4 of the 34 photos (10% would hold out 1), scored at the end of training into the card;
# too few to choose the best epoch by, so the demo keeps the last one (dropout and the cosine schedule stay on).
# WEIGHTS=auto uses ImageNet Xception when it can be downloaded (or is cached), else random weights, loudly.
# A second `make demo` does nothing: every stage is incremental. DEMO_DATA moves its outputs (tests use it).
WEIGHTS ?= auto
EPOCHS ?= 25
DEMO_DATA ?= data
demo: $(STAMP)
	$(BIN)/colorization pipeline data/samples/photos --dataset $(DEMO_DATA)/datasets/samples \
		--model-dir $(DEMO_DATA)/models/samples --size 128 --width 0.5 --epochs $(EPOCHS) --batch-size 8 \
		--weights $(WEIGHTS) --resume --validation-percent 20 --keep last
	$(BIN)/colorization colorize data/samples/archive $(DEMO_DATA)/colorized/samples --model $(DEMO_DATA)/models/samples
	@echo
	@echo "Coloured photos:  $(DEMO_DATA)/colorized/samples/ (the grey originals are in data/samples/archive/)"
	@echo "Before/after:     $(DEMO_DATA)/colorized/samples/.colorize/gallery.html"
	@echo "Model and card:   $(DEMO_DATA)/models/samples/model.keras, $(DEMO_DATA)/models/samples/model.json"

test: $(STAMP)
	TEST_OUTPUT=$${TEST_OUTPUT:-data/test-output} $(BIN)/pytest

# Run it as a service (README): server, workers and deployments in the background, state under .state/.
server worker deploy stop status: $(STAMP)
	$(BIN)/python -m flows.service $@

clean:
	rm -rf data/datasets data/models data/colorized data/evaluations
