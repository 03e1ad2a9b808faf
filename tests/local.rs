//! The local trust boundary: what any local user can put into `maildrop/`, into `sendmail`'s
//! arguments and onto the public sockets must never inject mail, stop pickup, hang `mailq`,
//! force queue runs or exhaust a daemon's descriptors.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::smtp::{Client, Sink, free_port};
use crate::harness::{Install, WAIT, bin, mail_system_master_cf, run_env, text, wait_for};

/// A maildrop file as a local user could write it by hand, marked ready (owner execute).
fn hand_written(dir: &Path, name: &str, sender: &str, rcpt: &str, arrival_us: u64, client: &str, body: &str) {
    let env = serde_json::json!({
        "sender": sender,
        "recipients": [{"address": rcpt}],
        "arrival_us": arrival_us,
        "client": {"name": client, "addr": "192.0.2.66", "helo": client, "protocol": "ESMTP"},
    });
    let bytes = format!("POSTERN-QUEUE 1\n{env}\n{}\n{body}\nEND\n", body.len());
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// Wait until `postqueue -p` answers, and fail if it takes more than a few seconds.
fn mailq_answers(inst: &Install) -> String {
    let started = Instant::now();
    let out = inst.cli("postqueue", &["-p"]);
    assert!(out.status.success(), "postqueue -p: {}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(5), "postqueue -p took {:?}", started.elapsed());
    text(&out.stdout)
}

#[test]
fn sendmail_refuses_control_characters_in_envelope_addresses() {
    let sink = Sink::start(free_port());
    let (inst, _port) = Install::mail_system("message_size_limit = 100000\n", sink.port);
    let injected = "a@client.test>\r\nRCPT TO:<injected@customer.example>";
    let cases: &[(&[&str], &[u8], &str)] = &[
        (
            &["-f", injected, "u@customer.example"],
            b"Subject: x\n\nx\n",
            "sendmail: fatal: bad sender address: a@client.test>??RCPT TO:<injected@customer.example>\n",
        ),
        (
            &["-f", "me@sender.test", "u@customer.example\nRCPT TO:<injected@customer.example>"],
            b"Subject: x\n\nx\n",
            "sendmail: fatal: bad recipient address: u@customer.example?RCPT TO:<injected@customer.example>\n",
        ),
        (
            &["-t"],
            b"To: <u@customer.example\r\tRCPT TO:injected@customer.example>\nSubject: x\n\nx\n",
            "sendmail: fatal: bad recipient address: u@customer.example??RCPT TO:injected@customer.example\n",
        ),
        (&["-t"], b"To: u@customer.example\0\nSubject: x\n\nx\n", "sendmail: fatal: bad recipient address: u@customer.example?\n"),
    ];
    for (args, stdin, want) in cases {
        let out = run_env("sendmail", &inst.etc, args, stdin);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), *want, "{args:?}");
        assert!(inst.queue_files("maildrop").is_empty() && inst.queue_files("incoming").is_empty(), "{args:?}: nothing was queued");
    }
    // Larger than message_size_limit: refused before anything is written.
    let big = format!("Subject: big\n\n{}\n", "x".repeat(100_000));
    let out = run_env("sendmail", &inst.etc, &["-f", "me@sender.test", "u@customer.example"], big.as_bytes());
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "sendmail: fatal: message file too big\n");
    assert!(inst.queue_files("maildrop").is_empty());
    // Mail after them goes through, and the next hop never saw an injected recipient.
    let out = run_env("sendmail", &inst.etc, &["-f", "me@sender.test", "u@customer.example"], b"Subject: after\n\nafter\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("delivery", || (sink.count_containing("Subject: after") == 1).then_some(()));
    let all: Vec<String> = sink.messages().iter().flat_map(|m| m.recipients.clone()).collect();
    assert_eq!(all, vec!["u@customer.example"]);
    // Angle brackets are the address's, not part of it: `-f '<>'` is the null sender.
    let out = run_env("sendmail", &inst.etc, &["-f", "<>", "<v@customer.example>"], b"Subject: null sender\n\nx\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("delivery", || (sink.count_containing("Subject: null sender") == 1).then_some(()));
    let m = sink.messages().into_iter().find(|m| m.data.contains("Subject: null sender")).unwrap();
    assert_eq!((m.sender.as_str(), m.recipients.clone()), ("", vec!["v@customer.example".to_string()]));
}

#[test]
fn hostile_maildrop_files_never_stop_pickup_or_mailq() {
    let sink = Sink::start(free_port());
    let port = free_port();
    // No pickup at first: showq must cope with the files while they sit in maildrop.
    let without_pickup: String =
        mail_system_master_cf(port).lines().filter(|l| !l.starts_with("pickup")).map(|l| format!("{l}\n")).collect();
    let main = format!("relayhost = [127.0.0.1]:{}\nrelay_domains = customer.example\n", sink.port);
    let mut inst = Install::new(&main, &without_pickup);
    inst.start();
    let drop_dir = inst.spool.join("maildrop");
    nix::unistd::mkfifo(&drop_dir.join("FIFO1"), nix::sys::stat::Mode::from_bits_truncate(0o622)).unwrap();
    hand_written(inst.dir.path(), "outside", "s@sender.test", "u@customer.example", 1, "x", "Subject: via symlink\n");
    std::os::unix::fs::symlink(inst.dir.path().join("outside"), drop_dir.join("SYMLINK1")).unwrap();
    hand_written(&drop_dir, "HARDLINK1", "s@sender.test", "u@customer.example", 1, "x", "Subject: via hard link\n");
    std::fs::hard_link(drop_dir.join("HARDLINK1"), inst.dir.path().join("second-name")).unwrap();
    let sparse = std::fs::File::create(drop_dir.join("SPARSE1")).unwrap();
    sparse.set_len(100 << 30).unwrap();
    std::fs::set_permissions(drop_dir.join("SPARSE1"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let poisoned = format!(
        "POSTERN-QUEUE 1\n{}\n{}\nx\nEND\n",
        r#"{"sender":"s@sender.test","recipients":[{"address":"u@customer.example"}],"arrival_us":1}"#,
        usize::MAX
    );
    std::fs::write(drop_dir.join("POISON1"), poisoned).unwrap();
    std::fs::set_permissions(drop_dir.join("POISON1"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(drop_dir.join("GARBAGE1"), b"\xff\xfe garbage\n").unwrap();
    std::fs::set_permissions(drop_dir.join("GARBAGE1"), std::fs::Permissions::from_mode(0o700)).unwrap();
    hand_written(
        &drop_dir,
        "INJECT1",
        "a@client.test>\r\nRCPT TO:<injected@customer.example>",
        "u@customer.example",
        1,
        "x",
        "Subject: injected\n",
    );
    let bad = ["FIFO1", "SYMLINK1", "HARDLINK1", "SPARSE1", "POISON1", "GARBAGE1", "INJECT1"];

    // mailq answers at once, with none of them (showq never opens a FIFO or follows a link).
    assert_eq!(mailq_answers(&inst), "Mail queue is empty\n");

    // Now pickup comes up: it sets every one aside and goes on.
    std::fs::write(inst.etc.join("master.cf"), mail_system_master_cf(port)).unwrap();
    assert!(inst.cli("postfix", &["reload"]).status.success());
    let out = run_env("sendmail", &inst.etc, &["-f", "me@sender.test", "u@customer.example"], b"Subject: after them\n\nok\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("delivery of the good message", || (sink.count_containing("Subject: after them") == 1).then_some(()));
    wait_for("every bad file in corrupt/", || (inst.queue_files("corrupt").len() == bad.len()).then_some(()));
    for name in bad {
        assert!(inst.spool.join("corrupt").join(name).symlink_metadata().is_ok(), "{name} in corrupt/");
        let line = inst.wait_log(&format!("saving corrupt file \"{name}\" from queue \"maildrop\" to queue \"corrupt\": uid=0: "));
        assert!(line.contains("warning: "), "{line}");
    }
    assert!(inst.queue_files("maildrop").is_empty());
    assert_eq!(sink.count(), 1, "nothing but the good message was delivered");
    assert!(sink.messages().iter().all(|m| m.recipients == vec!["u@customer.example".to_string()]));
    // The symlink's target and the hard link's other name are untouched.
    assert!(inst.dir.path().join("outside").exists() && inst.dir.path().join("second-name").exists());
    assert_eq!(mailq_answers(&inst), "Mail queue is empty\n");
}

#[test]
fn who_and_when_come_from_the_file_owner_and_pickup_not_the_content() {
    let sink = Sink::start(free_port());
    let (mut inst, _port) = Install::mail_system("", sink.port);
    inst.stop();
    // A forged arrival time (1970) and client; the delivery's delay shows the real arrival.
    hand_written(
        &inst.spool.join("maildrop"),
        "FORGED1",
        "s@sender.test",
        "u@customer.example",
        1,
        "forged.example",
        "Subject: forged\n\nx\n",
    );
    inst.start();
    wait_for("delivery", || (sink.count_containing("Subject: forged") == 1).then_some(()));
    let m = &sink.messages()[0];
    assert!(m.data.starts_with("Received: by "), "{}", m.data);
    assert!(m.data.contains("(Postern, from userid 0)\r\n\tid FORGED1; "), "{}", m.data);
    assert!(!m.data.contains("forged.example") && !m.data.contains("192.0.2.66"), "{}", m.data);
    inst.wait_log(": uid=0 from=<s@sender.test>");
    let sent = inst.wait_log("to=<u@customer.example>");
    let delay: f64 = sent.split("delay=").nth(1).and_then(|d| d.split(',').next()).and_then(|d| d.parse().ok()).unwrap();
    assert!(delay < 60.0, "arrival is pickup's clock, not the file's: {sent}");
}

/// A copy of a command line program that other users can run (the checkout may sit below a
/// directory they cannot enter).
fn runnable_copy(inst: &Install, program: &str) -> std::path::PathBuf {
    let copy = inst.dir.path().join(program);
    std::fs::copy(bin(program), &copy).unwrap();
    copy
}

#[test]
fn maildrop_files_are_private_and_only_authorized_users_force_queue_runs() {
    crate::harness::require_root("this test acts as another user");
    let sink = Sink::start(free_port());
    let (mut inst, _port) = Install::mail_system("authorized_flush_users = root\n", sink.port);
    let (sendmail, postqueue) = (runnable_copy(&inst, "sendmail"), runnable_copy(&inst, "postqueue"));
    let etc = inst.etc.clone();
    let as_nobody = |program: &Path, args: &[&str]| {
        let mut cmd = Command::new(program);
        cmd.env("MAIL_CONFIG", &etc).args(args).uid(65534).gid(65534);
        cmd.stdin(std::process::Stdio::null()).output().unwrap()
    };

    // postqueue -f asks qmgr to forget dead sites and ignore retry times: refused by qmgr
    // from a user not in authorized_flush_users, with Postfix's text.
    let out = as_nobody(&postqueue, &["-f"]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("is not allowed to flush the mail queue"), "{}", text(&out.stderr));
    inst.wait_log("(65534) is not allowed to flush the mail queue");
    assert!(inst.cli("postqueue", &["-f"]).status.success(), "root may");

    // A maildrop file waiting for pickup is readable by its owner and the mail system only.
    inst.stop();
    let out = as_nobody(&sendmail, &["-f", "nobody@sender.test", "u@customer.example"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let files = inst.queue_files("maildrop");
    assert_eq!(files.len(), 1);
    let m = std::fs::metadata(&files[0]).unwrap();
    assert_eq!(m.uid(), 65534);
    assert_eq!(m.mode() & 0o007, 0, "no access for other users: mode {:o}", m.mode() & 0o777);
    assert!(std::fs::read(&files[0]).is_ok());
    inst.start();
    wait_for("delivery", || (sink.count() == 1).then_some(()));
    inst.wait_log(": uid=65534 from=<nobody@sender.test>");
}

/// Connect `n` times to `socket` as user `uid`, for this thread only (the raw system call,
/// unlike libc's wrapper, changes the credentials of the calling thread alone), so that
/// `SO_PEERCRED` shows `uid`; the connections are kept open and silent. Connects do not block:
/// a full listen queue is tried again until [`WAIT`] has passed.
fn connect_as(uid: u32, socket: &Path, n: usize) -> Vec<UnixStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket as new_socket};
    use std::os::fd::AsRawFd;
    let addr = UnixAddr::new(socket).unwrap();
    std::thread::spawn(move || {
        let keep = u32::MAX; // -1: leave the real and saved IDs alone
        // SAFETY: plain system calls on this thread's credentials.
        assert_eq!(unsafe { libc::syscall(libc::SYS_setresuid, keep, uid, keep) }, 0);
        let deadline = Instant::now() + WAIT;
        let mut conns = Vec::new();
        while conns.len() < n && Instant::now() < deadline {
            let fd = new_socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None).unwrap();
            match connect(fd.as_raw_fd(), &addr) {
                Ok(()) => {
                    let s = UnixStream::from(fd);
                    s.set_nonblocking(false).unwrap();
                    conns.push(s);
                }
                Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("connect: {e}"),
            }
        }
        // SAFETY: as above; the saved user ID is still root.
        assert_eq!(unsafe { libc::syscall(libc::SYS_setresuid, keep, 0u32, keep) }, 0);
        conns
    })
    .join()
    .unwrap()
}

/// Lower a daemon's descriptor limit (prlimit), so that a few hundred held connections would
/// exhaust it as a thousand would with a common default.
fn limit_descriptors(pid: i32, n: u64) {
    let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
    // SAFETY: a valid rlimit for a process we started.
    assert_eq!(unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &lim, std::ptr::null_mut()) }, 0);
}

#[test]
fn idle_local_connections_on_public_sockets_do_not_starve_the_mail_system() {
    crate::harness::require_root("this test acts as another user");
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("local_client_timeout = 2s\n", sink.port);
    // Make sure flush and showq run, then give them a small descriptor table.
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    assert!(c.cmd("ETRN customer.example").starts_with("25"));
    mailq_answers(&inst);
    for program in ["flush", "showq"] {
        let pid = wait_for(program, || inst.program_pid(program));
        limit_descriptors(pid, 256);
    }
    // 500 silent connections on each public socket, from one local user.
    let mut held = Vec::new();
    for service in ["flush", "showq", "qmgr", "pickup"] {
        held.push((service, connect_as(65534, &inst.socket("public", service), 500)));
    }
    // The mail system's own clients are still served at once.
    let started = Instant::now();
    let reply = c.cmd("ETRN customer.example");
    assert!(reply.starts_with("25"), "{reply}");
    assert!(started.elapsed() < Duration::from_secs(5), "ETRN took {:?}", started.elapsed());
    mailq_answers(&inst);
    // Every connect went through (accepted, and closed at once past the limit).
    assert!(held.iter().all(|(_, c)| c.len() == 500), "{:?}", held.iter().map(|(s, c)| (s, c.len())).collect::<Vec<_>>());
    for service in ["flush", "showq", "qmgr", "pickup"] {
        inst.wait_log(&format!("{service} socket: too many connections from uid 65534 (local_client_connection_limit = 10)"));
    }
    // Those that got in and say nothing are closed within seconds.
    let (_, showq_conns) = &mut held[1];
    let closed = showq_conns
        .iter_mut()
        .filter(|s: &&mut UnixStream| {
            s.set_read_timeout(Some(WAIT)).unwrap();
            let mut buf = Vec::new();
            (&**s).read_to_end(&mut buf).is_ok()
        })
        .count();
    assert_eq!(closed, 500, "every silent showq connection was closed");
    // Closed connections give their places back: the same user is served again.
    drop(held);
    let postqueue = runnable_copy(&inst, "postqueue");
    // (A place comes back just after the server closed the connection: allow a retry.)
    wait_for("postqueue -p as the same user", || {
        let out = Command::new(&postqueue).arg("-c").arg(&inst.etc).arg("-p").uid(65534).gid(65534).output().unwrap();
        out.status.success().then_some(())
    });
}

#[test]
fn pickup_as_mail_owner_reads_released_files_and_leaves_unreadable_ones_alone() {
    crate::harness::require_root("this test runs the services as nobody");
    let sink = Sink::start(free_port());
    let port = free_port();
    let inst =
        Install::new(&format!("relayhost = [127.0.0.1]:{}\nrelay_domains = customer.example\n", sink.port), &mail_system_master_cf(port));
    inst.run_services_as_nobody();
    let mut inst = inst;
    inst.start();
    inst.stop();
    // A file pickup cannot read (another user's, private, no ACL): not corrupt, just unreadable.
    hand_written(&inst.spool.join("maildrop"), "UNREADABLE1", "s@sender.test", "u@customer.example", 1, "x", "Subject: unreadable\n\nx\n");
    // A submission by a third user, released to mail_owner only.
    let sendmail = runnable_copy(&inst, "sendmail");
    let out = Command::new(&sendmail)
        .env("MAIL_CONFIG", &inst.etc)
        .args(["-f", "third@sender.test", "u@customer.example"])
        .uid(4242)
        .gid(4242)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    inst.start();
    wait_for("delivery of the released file", || (sink.count() == 1).then_some(()));
    assert_eq!(sink.messages()[0].sender, "third@sender.test");
    inst.wait_log(": uid=4242 from=<third@sender.test>");
    inst.wait_log("maildrop/UNREADABLE1: uid=0: Permission denied (os error 13); leaving it for a later attempt");
    assert!(inst.spool.join("maildrop/UNREADABLE1").exists(), "never removed or moved: it could not be read");
    assert!(inst.queue_files("corrupt").is_empty());
    // Once it is readable, the next scan takes it.
    std::fs::set_permissions(inst.spool.join("maildrop/UNREADABLE1"), std::fs::Permissions::from_mode(0o744)).unwrap();
    let out = run_env("sendmail", &inst.etc, &["-f", "root@sender.test", "u@customer.example"], b"Subject: nudge\n\nx\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("both delivered", || (sink.count() == 3).then_some(()));
    assert_eq!(sink.count_containing("Subject: unreadable"), 1);
}

#[test]
fn postsuper_does_its_queue_work_as_mail_owner() {
    crate::harness::require_root("this test sees postsuper give up root");
    let port = free_port();
    let mut inst = Install::new("relay_domains = customer.example\n", &mail_system_master_cf(port));
    inst.run_services_as_nobody();
    inst.start();
    inst.stop();
    let spool = common::queue::Spool::new(inst.spool.clone(), &["deferred".into()], 1);
    let env = common::queue::file::Envelope {
        sender: "s@sender.test".into(),
        recipients: vec![common::queue::file::Recipient { address: "u@customer.example".into(), ..Default::default() }],
        arrival_us: common::queue::file::now_us(),
        client: Default::default(),
        ..Default::default()
    };
    // One held message where mail_owner can reach it, one deferred in a directory only root
    // can enter (as a hostile or broken file system state would have it).
    let held = common::queue::file::write_new(&spool, common::queue::QueueName::Hold, &env, b"Subject: held\r\n\r\nx\r\n").unwrap();
    let hidden = common::queue::file::write_new(&spool, common::queue::QueueName::Deferred, &env, b"Subject: hidden\r\n\r\nx\r\n").unwrap();
    let hidden_path = spool.path(common::queue::QueueName::Deferred, &hidden);
    let hash_dir = hidden_path.parent().unwrap();
    nix::unistd::chown(hash_dir, Some(nix::unistd::Uid::from_raw(0)), Some(nix::unistd::Gid::from_raw(0))).unwrap();
    std::fs::set_permissions(hash_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Run by root, postsuper works as mail_owner: what mail_owner may do is done, and nothing
    // that only root could do.
    assert!(inst.cli("postsuper", &["-d", "ALL"]).status.success());
    assert!(!spool.path(common::queue::QueueName::Hold, &held).exists(), "the held message is deleted");
    assert!(hidden_path.exists(), "root's privileges were not used on the queue");
}
