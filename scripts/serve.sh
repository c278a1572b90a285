#!/usr/bin/env bash
# Set up (venv, install, schema) and run the whole service on its embedded defaults:
# SQLite under ./var, the in-process broker, var/maildir as the inbox, var/outbox for sent mail.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/consultas ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e .
fi
.venv/bin/consultas db upgrade
exec .venv/bin/consultas serve "$@"
