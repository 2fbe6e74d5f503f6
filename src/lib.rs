//! Switchboard: a gRPC control plane that assigns work to AI agents and services.

pub mod api;
pub mod auth;
pub mod bench;
pub mod config;
pub mod domain;
pub mod learned_scorer;
pub mod machine;
pub mod metrics;
pub mod server;
pub mod service;
pub mod simulate;
pub mod store;

/// Generated protobuf and gRPC code for `switchboard.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("switchboard.v1");

    /// Encoded descriptor set of every switchboard proto, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("switchboard_descriptor");
}
