#!/bin/sh
# Install Specks (its embedded default model, YOLOX-Nano, is package data) into a virtual
# environment, then load that model once (its sha256 is checked). The one install recipe: `make install` (developers and CI) runs it with
# --editable, the Dockerfile's build stage without, so CI exercises every step an image build
# takes even where no image can be built.
#
#   usage: scripts/install.sh VENV [--editable]      (run from the repository root)
#   PYTHON (default python3) creates VENV when it does not exist yet.
set -eu

venv=${1:?usage: scripts/install.sh VENV [--editable]}
mode=${2:-}

test -x "$venv/bin/python" || "${PYTHON:-python3}" -m venv "$venv"
pip_install() {
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}
case "$mode" in
    --editable) pip_install -e . ;;
    "") pip_install . ;;
    *) echo "scripts/install.sh: unknown option $mode (expected --editable or nothing)" >&2; exit 2 ;;
esac
"$venv/bin/specks" models > /dev/null  # loads the embedded default (its sha256 checked)
