//! The control channel between the master and each child: a Unix socketpair inherited by the
//! child, carrying frames in both directions.

use serde::{Deserialize, Serialize};

/// Environment variable naming the child's end of the control channel.
pub const CONTROL_FD_ENV: &str = "POSTERN_CONTROL_FD";

/// From child to master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildEvent {
    /// Initialization is done; the child accepts connections now.
    Ready,
    /// The first client was accepted (starts `?` wakeup timers).
    FirstUse,
    /// Clients being served right now (a draining process reports it as it falls).
    Load { clients: u32 },
}

/// From master to child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MasterCommand {
    /// The master.cf wakeup timer fired.
    Wakeup,
    /// Re-read main.cf (SIGHUP to the master); keep in-memory state.
    Reload,
    /// Stop accepting, finish current clients, exit.
    Drain,
    /// The process this one replaces still serves `sessions` clients of the service: keep that
    /// many session slots unused, so that old and new sessions together stay within maxproc.
    Reserve { sessions: u32 },
}
