#!/usr/bin/env bash
# Installs the real Helm engine for the chart tests (helm-sdkpy: Helm's Go library with a
# Python binding, plus PyYAML) into a virtualenv, checks that it loads, and prints the
# virtualenv's python on stdout:
#
#   BONDNET_HELM_PYTHON="$(charts/bondnet/tests/install-deps.sh)" \
#     cargo test -p bondnet-operator --test chart -- --ignored
#
# helm-sdkpy declares Python >= 3.12 but works on 3.11, hence --ignore-requires-python.
set -euo pipefail
venv="${BONDNET_HELM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/bondnet/helm-venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c 'import helm_sdkpy, yaml' 2>/dev/null; then
    "$venv/bin/pip" install --quiet --ignore-requires-python helm-sdkpy pyyaml >&2
fi
"$venv/bin/python" -c 'import helm_sdkpy; helm_sdkpy.Configuration(namespace="probe")' >&2
echo "$venv/bin/python"
