#!/usr/bin/env bash
# Installs everything autoglm-deploy needs to build and test, from Debian 12 packages only.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  g++ cmake ninja-build pkg-config git ca-certificates openssl coreutils curl \
  libcli11-dev libyaml-cpp-dev libspdlog-dev libfmt-dev nlohmann-json3-dev \
  libcurl4-openssl-dev libssl-dev libcpp-httplib-dev \
  libgtest-dev libgmock-dev libbenchmark-dev libpng-dev libjpeg62-turbo-dev \
  python3-venv prometheus >/dev/null
echo "install-deps: done"
