//! Sessions: the [`registry`] of ids, folders and limits, and the running [`session`]
//! pipeline of one client.

pub mod registry;
#[allow(clippy::module_inception)]
pub mod session;
