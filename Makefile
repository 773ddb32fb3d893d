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

# The fuzz targets at their long counts (the default test run uses short ones); counts are in docs/fuzzing.md.
FUZZ_TESTS = tests/lwm2m/test_frame.py tests/lwm2m/test_codec_roundtrip.py tests/client/test_fuzz_codec.py \
	tests/verify/test_reader_fuzz.py tests/device/test_loader.py tests/c/test_c_fuzz.py \
	tests/backends/test_trees_fuzz.py tests/backends/test_classic_fuzz.py tests/backends/test_onnx.py tests/compiler/test_random_ops.py tests/compiler/test_planner.py \
	tests/device/test_coproc_link.py tests/client/test_oscore.py tests/signing/test_signing_fuzz.py \
	tests/device/test_learn_head_fuzz.py tests/verify/test_patch_fuzz.py tests/client/test_fuzz_senml.py tests/client/test_anomaly_meta_fuzz.py

fuzz: setup
	$(PY) -m pytest -q -n 2 --fuzz-long $(FUZZ_TESTS)

# Both bare-metal Cortex-M4 firmwares (docs/firmware.md); the tests build them on demand too.
firmware: setup
	$(MAKE) -C firmware BOARD=mps2-an386
	$(MAKE) -C firmware BOARD=stm32f4

clean:
	rm -rf build .setup-stamp .pytest_cache
