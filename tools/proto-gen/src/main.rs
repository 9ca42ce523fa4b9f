//! Regenerates `proto/orders.v1.rs` from `proto/orders.proto`.
//!
//! Uses `protox` (a pure-Rust protobuf compiler) to build the file descriptor
//! set, so no system `protoc` is required. Run via `scripts/gen-proto.sh`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    // tools/proto-gen -> repo root
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let proto_dir = root.join("proto");

    let fds = match protox::compile(["orders.proto"], [&proto_dir]) {
        Ok(fds) => fds,
        Err(err) => {
            eprintln!("proto-gen: failed to compile orders.proto: {err:?}");
            return ExitCode::FAILURE;
        }
    };

    let result = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .emit_rerun_if_changed(false)
        .out_dir(&proto_dir)
        .compile_fds(fds);

    match result {
        Ok(()) => {
            eprintln!("proto-gen: wrote {}", proto_dir.join("orders.v1.rs").display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("proto-gen: code generation failed: {err}");
            ExitCode::FAILURE
        }
    }
}
