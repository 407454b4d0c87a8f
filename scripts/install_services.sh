#!/usr/bin/env bash
# Installs the real servers that the fleet-mode tests start privately on loopback:
# PostgreSQL (job store), RabbitMQ (broker) and nginx (in front of the API replicas in the
# load test, benchmarks/load/), from Debian's packages, and espeak-ng (the SONIC_TextToSpeech
# node's local voice; its tests and the text templates need it). Needs root.
# Idempotent: does nothing when they are already installed. The packages' own system
# services are not used (tests run their own instances in temp folders on free ports).
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install_services: need root to install ${need[*]} (run: sudo $0)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101: install the packages without starting their system-wide services.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -q
apt-get install -y -q --no-install-recommends "${need[@]}"
