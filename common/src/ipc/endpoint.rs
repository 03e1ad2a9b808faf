//! Where service sockets live: `$queue_directory/public/<name>` and `.../private/<name>`.

use std::path::{Path, PathBuf};

/// Socket class: `public` (reachable by local users) or `private` (mail system only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Public,
    Private,
}

impl Class {
    pub fn dir_name(self) -> &'static str {
        match self {
            Class::Public => "public",
            Class::Private => "private",
        }
    }
}

/// The socket path of service `name`.
pub fn service_path(queue_dir: &Path, class: Class, name: &str) -> PathBuf {
    queue_dir.join(class.dir_name()).join(name)
}

/// The path relative to the queue directory, as Postfix shows it in warnings (`public/flush`).
pub fn display_path(class: Class, name: &str) -> String {
    format!("{}/{}", class.dir_name(), name)
}
