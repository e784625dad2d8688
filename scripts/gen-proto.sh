#!/usr/bin/env bash
# Regenerate src/protocol/gen/ from proto/hubbub.proto. The output is committed, so `npm ci` alone
# gives a working tree; run this (needs protoc: apt-get install protobuf-compiler) after editing the schema.
# With an argument, writes there instead (the tests use that to check the committed code is current).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-src/protocol/gen}"
mkdir -p "$out"
protoc --plugin=protoc-gen-es=node_modules/.bin/protoc-gen-es \
  --es_out="$out" --es_opt=target=ts,import_extension=js \
  -I proto proto/hubbub.proto
