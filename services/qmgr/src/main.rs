//! The `qmgr` program: skeleton start-up, then the scheduler and its trigger server
//! ([`qmgr::server::run`]) in an actix `System`.

use common::daemon::{self, fatal};

fn main() {
    let (args, params) = daemon::start("qmgr");
    if args.process_limit.is_some_and(|n| n != 1) {
        fatal(&format!("service {} requires a process limit of 1", args.service));
    }
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    actix_rt::System::new().block_on(qmgr::server::run(args, params, listeners));
}
