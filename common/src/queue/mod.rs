//! The mail queue on disk: directories, queue IDs and queue files. The only code that builds
//! queue paths.

pub mod ages;
pub mod claim;
pub mod dirs;
pub mod file;
mod group_sync;
pub mod id;
pub mod listing;
pub mod maildrop;
pub mod unthrottle;

pub use dirs::{QueueName, Spool, flush_dir, master_pid_file};
pub use id::QueueId;

use crate::config::{ParamError, Params};

impl Spool {
    /// The spool of a configuration (`queue_directory`, `hash_queue_names`, `hash_queue_depth`).
    pub fn from_params(p: &Params) -> Result<Spool, ParamError> {
        let depth = p.int("hash_queue_depth")?.clamp(1, 8) as usize;
        Ok(Spool::new(p.dir("queue_directory")?, &p.list("hash_queue_names")?, depth))
    }
}
