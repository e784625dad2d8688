#!/usr/bin/env bash
# The whole test suite, runnable on a fresh machine: installs the system packages the tests need
# (Debian's chromium for the browser test, tmux for the interactive CLI test, protobuf-compiler for
# protoc, the independent protobuf implementation of the protobuf tests) when they are missing,
# builds, type-checks, then runs every test file with Node's built-in test runner.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v script >/dev/null 2>&1 || missing+=(bsdutils) # script(1): a pseudo-terminal for the CLI progress test
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing system packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -d node_modules ] || npm ci
npm run --silent build
npm run --silent typecheck

# One file at a time keeps timing-sensitive tests (heartbeat, slow consumers) away from each other's
# load on this 2-core machine; each file still runs its own server on a free port.
exec node --import tsx --test --test-concurrency=1 --test-timeout=120000 test/*.test.ts
