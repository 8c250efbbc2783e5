//! Sessions: the [`registry`] of ids, folders and limits, the [`capacity`] check that
//! admits only what the machine holds, the running [`session`] pipeline of one client, and
//! its [`ending`] (what the page is told, retention, the recording offer).

pub mod capacity;
pub mod deadline;
pub mod ending;
pub mod ids;
pub mod life;
pub mod registry;
#[allow(clippy::module_inception)]
pub mod session;
pub mod stats;
mod supervisor;
