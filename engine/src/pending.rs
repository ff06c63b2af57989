//! Public services whose RPCs later work fills in. Until then every RPC answers
//! `UNIMPLEMENTED` naming itself (the generated default, renamed by `berth_rpc`), while the
//! services are already listed by reflection and reported by health.

use berth_proto::engine::v1::{build_server, networks_server, volumes_server};

/// `berth.engine.v1.Build`
#[derive(Debug, Clone, Copy)]
pub struct Build;
impl build_server::Build for Build {}

/// `berth.engine.v1.Volumes`
#[derive(Debug, Clone, Copy)]
pub struct Volumes;
impl volumes_server::Volumes for Volumes {}

/// `berth.engine.v1.Networks`
#[derive(Debug, Clone, Copy)]
pub struct Networks;
impl networks_server::Networks for Networks {}

/// Adds every pending service to `set`.
pub fn add_all(set: berth_rpc::serve::ServiceSet) -> berth_rpc::serve::ServiceSet {
    set.with(build_server::BuildServer::new(Build))
        .with(volumes_server::VolumesServer::new(Volumes))
        .with(networks_server::NetworksServer::new(Networks))
}
