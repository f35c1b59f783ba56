#!/usr/bin/env bash
# Installs what the benchmarks in bench/ run beside keyshift, from Debian's
# packages, idempotently: wrk (the load generator), nginx (the read
# throughput baseline), jq. Needs root (or sudo) the first time.
#
#   bench/setup.sh
set -euo pipefail

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v jq >/dev/null || missing+=(jq)
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "bench/setup.sh: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
# The nginx package would start a system nginx on port 80; the benchmarks
# run their own, so keep the package's service from starting.
printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
"${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
trap '"${sudo[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
