//! The `showq` program.

use common::config::users::UserList;
use common::daemon::{self, Daemon, Event, fatal};
use common::ipc::control::MasterCommand;
use common::log_warning;
use common::queue::Spool;

fn main() {
    let (args, params) = daemon::start("showq");
    let mut spool = Spool::from_params(&params).unwrap_or_else(|e| fatal(&e.to_string()));
    let mut users = UserList::new(&params.list("authorized_mailq_users").unwrap_or_else(|e| fatal(&e.to_string())));
    let listeners = daemon::inherited_listeners().unwrap_or_else(|e| fatal(&e.to_string()));
    let rt = daemon::runtime(0);
    rt.block_on(async move {
        let mut d = Daemon::new(&args.service, listeners).unwrap_or_else(|e| fatal(&e.to_string()));
        d.ready();
        loop {
            match d.next().await {
                Event::Unix(stream) => {
                    tokio::spawn(showq::serve_client(stream, spool.clone(), users.clone()));
                }
                Event::Tcp(..) => log_warning!("showq: ignoring a TCP connection; this is a unix service"),
                Event::Command(MasterCommand::Reload) => match args.load_params("showq") {
                    Ok(p) => {
                        if let Ok(s) = Spool::from_params(&p) {
                            spool = s;
                        }
                        users = UserList::new(&p.list("authorized_mailq_users").unwrap_or_default());
                    }
                    Err(e) => log_warning!("reload: {e}; keeping the running configuration"),
                },
                Event::Command(MasterCommand::Wakeup) => {}
                stop @ (Event::Command(MasterCommand::Drain) | Event::Terminate | Event::MasterGone) => return stop.log_stop(),
            }
        }
    });
}
