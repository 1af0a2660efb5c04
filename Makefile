# Two entry points do all set-up on a fresh machine: `make app` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
CHROMIUM := /usr/bin/chromium
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: app test bench clean system-deps demo-checkpoint

$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1 || $(PY) -m pip install --quiet torch torchvision
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Debian's Chromium for the app's browser tests (skipped when it is already there). Never fatal:
# without root or network the app still runs and the browser tests skip with a message.
system-deps:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; } \
		|| echo "warning: could not install chromium with apt; the browser tests will be skipped"

app: $(STAMP) system-deps
	$(PY) app.py

test: $(STAMP) system-deps
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m dmnet.bench

# The bundled demo checkpoint, from scratch on a 2-core CPU (~35 min undisturbed on a Zen 5 core
# pair: 6000 iterations of 8 128 px ContextShapes scenes at ~0.35 s). Run it again after an
# interruption: it resumes from the last checkpoint in $(DEMO_WORK).
DEMO_PRESET := dmnet_r18w32-d8_1xb8-6k_context-128x128
DEMO_WORK   := work_dirs/context
DEMO_CKPT   := assets/demo/dmnet_r18-d8_context.pth
demo-checkpoint: $(STAMP)
	$(PY) -m training.train $(DEMO_PRESET) --work-dir $(DEMO_WORK) --val-limit 100 --workers 1 \
		$(if $(wildcard $(DEMO_WORK)/last_checkpoint),--resume)
	$(PY) -m training.publish $(DEMO_WORK)/iter_6000.pth $(DEMO_CKPT)
	$(PY) -m training.evaluate $(DEMO_CKPT)
	$(PY) -m training.ablation $(DEMO_CKPT)
	$(PY) -m app.core.roles $(DEMO_CKPT)
	$(PY) -m training.baseline --dataset context_shapes

clean:
	rm -rf $(VENV) .pytest_cache
