//! Sessions: the [`registry`] of ids, folders and limits, the [`capacity`] check that
//! admits only what the machine holds, and the running [`session`] pipeline of one client.

pub mod capacity;
pub mod registry;
#[allow(clippy::module_inception)]
pub mod session;
