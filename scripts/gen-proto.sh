#!/usr/bin/env bash
# Regenerate proto/orders.v1.rs from proto/orders.proto.
#
# Needs only cargo (the generator uses protox, a pure-Rust protobuf compiler;
# no system protoc). The output is checked in, so this only needs to be run
# after editing the .proto file.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/proto-gen-target}"

cargo run --quiet --manifest-path tools/proto-gen/Cargo.toml
rustfmt --edition 2024 proto/orders.v1.rs
