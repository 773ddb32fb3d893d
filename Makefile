# The two commands of the README: `make demo` and `make test`. Both set up the machine first.
PY ?= python3

.PHONY: setup demo test bench fuzz firmware clean

setup:
	@bash host/scripts/setup.sh

demo: setup
	tinymlaas demo

test: setup
	$(PY) -m pytest -q -n 2 --dist loadgroup

bench: setup
	$(PY) -m bench

fuzz: setup
	$(PY) -m pytest -q tests -m fuzz --fuzz-long

clean:
	rm -rf build .setup-stamp .pytest_cache
