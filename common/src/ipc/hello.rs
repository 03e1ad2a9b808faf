//! The server-speaks-first announcement: right after accept the server sends a `Hello` naming
//! its protocol and version, and a client talks only to the protocol it expects.

use serde::{Deserialize, Serialize};

/// The first frame on every service connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: String,
    pub version: u32,
}

/// A service protocol: its request and reply types and its announced name.
pub trait Protocol {
    const NAME: &'static str;
    const VERSION: u32;
    type Request: Serialize + serde::de::DeserializeOwned + Send + 'static;
    type Reply: Serialize + serde::de::DeserializeOwned + Send + 'static;

    fn hello() -> Hello {
        Hello { protocol: Self::NAME.to_string(), version: Self::VERSION }
    }
}
