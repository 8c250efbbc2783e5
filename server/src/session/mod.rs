//! Sessions: the [`registry`] of [`ids`], folders and limits, the [`capacity`] check that
//! admits only what the machine holds, the [`live`] session of one client (its pipeline
//! run by the [`supervisor`], its [`life`] deadlines), and its [`ending`] (what the page is
//! told, retention, the recording offer).

pub mod capacity;
pub mod deadline;
pub mod ending;
pub mod frame_times;
pub mod ids;
pub mod kept;
pub mod life;
pub mod live;
pub mod quota;
pub mod registry;
pub mod stats;
mod supervisor;
