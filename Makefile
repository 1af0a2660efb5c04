# Two entry points do all set-up on a fresh machine: `make app` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
CHROMIUM := /usr/bin/chromium
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: app test bench clean system-deps

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

clean:
	rm -rf $(VENV) .pytest_cache
