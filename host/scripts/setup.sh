#!/usr/bin/env bash
# Installs everything tinymlaas needs on a fresh Debian 12 + Python 3.11 machine: Debian packages
# (ARM toolchain, QEMU, libcoap for interop tests, clang + libFuzzer for the C loader fuzz target, PostgreSQL
# for the database tests, Chromium + its WebDriver for the console's browser tests, Redis for the task-queue
# comparison bench/queue_choice.py) and the Python packages.
# Safe to re-run: each step is skipped when its result is already present.
set -euo pipefail
cd "$(dirname "$0")/../.."

apt_pkgs=(qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi libcoap3-bin clang libclang-rt-14-dev postgresql
          chromium chromium-driver nginx-light libnginx-mod-stream redis-server)
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

stamp=.setup-stamp
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: pip install -e .[test,bench]"
    python3 -m pip install -q --disable-pip-version-check -e ".[test,bench]"
    touch "$stamp"
fi

if [ -f tests/interop/package.json ] && [ ! -d tests/interop/node_modules ]; then
    echo "setup: npm install (LwM2M interop peer)"
    (cd tests/interop && npm install --silent --no-audit --no-fund >/dev/null)
fi
