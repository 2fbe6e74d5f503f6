//! Compiles `proto/` with protox (no system protoc) and writes the descriptor set for reflection.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/switchboard/v1/types.proto",
    "proto/switchboard/v1/register_service.proto",
    "proto/switchboard/v1/assign_service.proto",
    "proto/switchboard/v1/queue_service.proto",
    "proto/switchboard/v1/performance_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptor_set = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("switchboard_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptor_set),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptor_set)?;
    Ok(())
}
