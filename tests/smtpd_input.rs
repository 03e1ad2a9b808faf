//! Hostile SMTP input (issue 9 §1): smuggled ends of data, bare newlines, clients that never
//! read, error counters over long sessions, unsupported options, size and hop limits, memory
//! per session, and a queue file system that fills up.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::smtp::{Client, Sink, free_port, queued_id};
use crate::harness::{Install, WAIT, wait_for};

/// Every sequence that some MTA has taken for an end of data.
const SMUGGLING: [&[u8]; 8] = [b"\n.\n", b"\n.\r", b"\r.\n", b"\r.\r", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n\x00.\r\n"];

/// Read replies until the server closes the connection.
fn replies_until_close(c: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let r = c.reply();
        if r.is_empty() {
            return out;
        }
        out.push(r);
    }
}

/// One session per smuggling sequence; each must queue exactly one message that carries the
/// would-be commands as content.
fn smuggle_through(inst: &Install, port: u16, sink: &Sink) {
    let before = inst.log_count("client=localhost[127.0.0.1]");
    for (i, seq) in SMUGGLING.iter().enumerate() {
        let mut c = Client::connect(port);
        c.cmd("EHLO client.test");
        assert!(c.cmd("MAIL FROM:<s@sender.test>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<u@customer.example>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        let mut data = format!("Subject: smuggle {i}\r\n\r\nbefore").into_bytes();
        data.extend_from_slice(seq);
        data.extend_from_slice(b"MAIL FROM:<evil@sender.test>\r\nRCPT TO:<smuggled@customer.example>\r\nDATA\r\nsmuggled body\r\n");
        data.extend_from_slice(b".\r\nQUIT\r\n");
        c.send_raw(&data);
        let replies = replies_until_close(&mut c);
        let queued = replies.iter().filter(|r| r.starts_with("250 2.0.0 Ok: queued as")).count();
        assert_eq!(queued, 1, "sequence {i} {seq:?}: one message, replies {replies:?}");
        assert_eq!(replies.last().map(String::as_str), Some("221 2.0.0 Bye"), "sequence {i}: {replies:?}");
    }
    wait_for("every message at the sink", || (sink.count() >= before + SMUGGLING.len()).then_some(()));
    assert_eq!(inst.log_count("client=localhost[127.0.0.1]"), before + SMUGGLING.len(), "{}", inst.log());
    for m in sink.messages() {
        assert_eq!(m.recipients, vec!["u@customer.example".to_string()], "nothing smuggled: {m:?}");
        assert!(m.data.contains("smuggled body"), "the would-be commands are content: {:?}", m.data);
    }
}

#[test]
fn smuggled_ends_of_data_never_end_a_message() {
    // A client in mynetworks is excluded from smtpd_forbid_bare_newline by default: its bare
    // LFs are accepted, but never as an end of data.
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("", sink.port);
    smuggle_through(&inst, port, &sink);
    // And a client that is not excluded, in the default normalize mode.
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("smtpd_forbid_bare_newline_exclusions =\n", sink.port);
    smuggle_through(&inst, port, &sink);
}

#[test]
fn bare_newline_reject_and_note() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("smtpd_forbid_bare_newline = reject\nsmtpd_forbid_bare_newline_exclusions =\n", sink.port);
    // A command that ends in a bare LF: refused, and the client is disconnected.
    let mut c = Client::connect(port);
    c.send_raw(b"EHLO client.test\n");
    assert_eq!(c.reply(), format!("550 5.5.2 {} Error: bare <LF> received", myhostname(&inst)));
    assert_eq!(c.reply(), "", "disconnected");
    // Message content with a bare LF: refused after the end of data, nothing queued.
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<s@sender.test>");
    c.cmd("RCPT TO:<u@customer.example>");
    c.cmd("DATA");
    c.send_raw(b"Subject: x\r\n\r\nbare\nline\r\n");
    assert_eq!(c.cmd("."), format!("550 5.5.2 {} Error: bare <LF> received", myhostname(&inst)));
    inst.wait_log("NOQUEUE: reject: DATA from localhost[127.0.0.1]: bare <LF> received; from=<s@sender.test> to=<u@customer.example> proto=ESMTP helo=<client.test>");
    // The session goes on, and a clean message is taken.
    let id = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: clean\n\nclean\n"));
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count(), 1);

    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("smtpd_forbid_bare_newline = note\nsmtpd_forbid_bare_newline_exclusions =\n", sink.port);
    let mut c = Client::connect(port);
    c.send_raw(b"HELO client.test\n");
    assert!(c.reply().starts_with("250"));
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    inst.wait_log("disconnect from localhost[127.0.0.1] helo=1 quit=1 commands=2 notes=bare_lf");
}

fn myhostname(inst: &Install) -> String {
    crate::harness::text(&inst.cli("postconf", &["-h", "myhostname"]).stdout).trim().to_string()
}

#[test]
fn three_hundred_messages_with_rset_between_them_on_one_session() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("", sink.port);
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    for i in 0..300 {
        let reply = c.send_mail("s@sender.test", &["u@customer.example"], &format!("Subject: {i}\n\nmessage {i}\n"));
        assert!(reply.starts_with("250 2.0.0 Ok: queued as"), "message {i}: {reply}");
        assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok", "RSET after message {i}");
    }
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    wait_for("300 messages at the sink", || (sink.count() == 300).then_some(()));
    assert_eq!(inst.log_count("too many errors"), 0);
}

#[test]
fn clients_that_never_read_their_replies_lose_their_sessions() {
    let sink = Sink::start(free_port());
    let port = free_port();
    let master = crate::harness::mail_system_master_cf(port).replace(" inet n - n - - smtpd", " inet n - n - 2 smtpd");
    let mut inst =
        Install::new(&format!("relayhost = [127.0.0.1]:{}\nrelay_domains = customer.example\nsmtpd_timeout = 2s\n", sink.port), &master);
    inst.start();
    // Two clients take both session slots and pipeline commands without ever reading.
    let mut hogs = Vec::new();
    for _ in 0..2 {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut w = s.try_clone().unwrap();
        hogs.push(s);
        std::thread::spawn(move || {
            let burst = b"EHLO client.test\r\n".repeat(4096);
            let deadline = Instant::now() + WAIT;
            // Until the server stops reading (its replies fill both socket buffers).
            while Instant::now() < deadline && w.write_all(&burst).is_ok() {}
        });
    }
    wait_for("both stuck sessions timed out", || (inst.log_count("timeout after EHLO from localhost[127.0.0.1]") == 2).then_some(()));
    // The slots are free again: a legitimate client is served.
    let mut c = Client::connect(port);
    assert!(c.banner.starts_with("220"), "{}", c.banner);
    c.cmd("EHLO client.test");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: ok\n\nok\n"));
    inst.wait_log(&format!("{id}: removed"));
}

#[test]
fn unsupported_options_size_and_hop_limits() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("message_size_limit = 100000\n", sink.port);
    let mut c = Client::connect(port);
    assert!(c.cmd("EHLO client.test").contains("250-SIZE 100000"));
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test> FOO=bar"), "555 5.5.4 Unsupported option: FOO=bar");
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test> BODY=BINARYMIME"), "555 5.5.4 Unsupported option: BODY=BINARYMIME");
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test> SIZE=100001"), "552 5.3.4 Message size exceeds fixed limit");
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test> SIZE=12x"), "501 5.5.4 Bad message size syntax");
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test\r> SIZE=10"), "501 5.1.7 Bad sender address syntax");
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test> SIZE=1000 BODY=8BITMIME"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<u@customer.example> XDSN=NEVER"), "555 5.5.4 Unsupported option: XDSN=NEVER");
    assert_eq!(c.cmd("RCPT TO:<u@customer.example>"), "250 2.1.5 Ok");
    // A message over the limit is read to its end and refused.
    c.cmd("DATA");
    c.send_raw(&b"x".repeat(100_050));
    assert_eq!(c.cmd("\r\n."), "552 5.3.4 Message size exceeds fixed limit");
    // Hops: our own Received: header makes 50 + 1, one too many.
    let hops = |n: usize| (0..n).map(|i| format!("Received: from hop{i}.example\n")).collect::<String>() + "Subject: hops\n\nbody\n";
    c.cmd("MAIL FROM:<s@sender.test>");
    c.cmd("RCPT TO:<u@customer.example>");
    c.cmd("DATA");
    let stuffed = hops(50).replace('\n', "\r\n");
    c.send_raw(stuffed.as_bytes());
    assert_eq!(c.cmd("."), "554 5.4.0 Error: too many hops");
    inst.wait_log("NOQUEUE: reject: DATA from localhost[127.0.0.1]: 554 5.4.0 Error: too many hops; from=<s@sender.test>");
    let id = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], &hops(49)));
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count(), 1, "only the message within the limits");

    // message_size_limit = 0: no limit, and SIZE is advertised without a number.
    let (inst, port) = Install::mail_system("message_size_limit = 0\n", sink.port);
    let mut c = Client::connect(port);
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.lines().any(|l| l == "250-SIZE"), "{ehlo}");
    let big = "Subject: big\n\n".to_string() + &format!("{}\n", "y".repeat(999)).repeat(11_000);
    let id = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], &big));
    inst.wait_log(&format!("{id}: removed"));
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches(" kB").parse().ok()).unwrap_or(0)
}

/// The bound the smtpd manual page states for this test's 52 sessions, in KiB: a base plus
/// 256 KiB per session.
const SMTPD_RSS_BOUND_KIB: u64 = 32 * 1024 + 52 * 256;

#[test]
fn memory_per_session_is_bounded_whatever_the_message_size() {
    let port = free_port();
    // No queue manager: the messages stay in incoming/, nothing relays a gigabyte.
    let mut inst = Install::new("message_size_limit = 30000000\n", &format!("127.0.0.1:{port} inet n - n - 100 smtpd\n"));
    inst.start();
    let smtpd = wait_for("smtpd", || inst.program_pid("smtpd"));
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(smtpd), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let session = |body: Box<dyn Fn(&mut Client) + Send>| {
        std::thread::spawn(move || {
            let mut c = Client::connect(port);
            c.cmd("EHLO client.test");
            c.cmd("MAIL FROM:<s@sender.test>");
            c.cmd("RCPT TO:<u@customer.example>");
            assert!(c.cmd("DATA").starts_with("354"));
            body(&mut c);
            let r = c.cmd(".");
            assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{r}");
        })
    };
    // One 10 MB line without a line end, twice, and 50 concurrent 20 MB messages.
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(session(Box::new(|c| {
            c.send_raw(&vec![b'x'; 10 * 1024 * 1024]);
            c.send_raw(b"\r\n");
        })));
    }
    for _ in 0..50 {
        clients.push(session(Box::new(|c| {
            let line = format!("{}\r\n", "z".repeat(998));
            let block = line.repeat(1000);
            for _ in 0..20 {
                c.send_raw(block.as_bytes());
            }
        })));
    }
    for c in clients {
        c.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("smtpd peak RSS over 52 sessions: {peak} KiB (after: {} KiB)", rss_kib(smtpd));
    assert_eq!(inst.queue_files("incoming").len(), 52);
    assert!(peak < SMTPD_RSS_BOUND_KIB, "smtpd peaked at {peak} KiB, bound {SMTPD_RSS_BOUND_KIB} KiB");
}

/// A small tmpfs over the spool, unmounted when dropped. Declared before the installation, so
/// that it is dropped after it: the system (found through the pid file on the tmpfs) is
/// stopped first, whether the test passed or not.
struct SmallDisk(Option<std::path::PathBuf>);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::process::Command::new("umount").arg("-l").arg(path).status();
        }
    }
}

#[test]
fn a_full_queue_file_system_refuses_mail_and_keeps_what_it_acknowledged() {
    crate::harness::require_root("this test mounts a tmpfs");
    let sink_port = free_port();
    let port = free_port();
    let main =
        format!("relayhost = [127.0.0.1]:{sink_port}\nrelay_domains = customer.example\nmessage_size_limit = 0\nqueue_minfree = 0\n");
    let mut disk = SmallDisk(None);
    let mut inst = Install::new(&main, &crate::harness::mail_system_master_cf(port));
    std::fs::create_dir_all(&inst.spool).unwrap();
    let ok = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"]).arg(&inst.spool).status().unwrap();
    assert!(ok.success(), "mount tmpfs");
    disk.0 = Some(inst.spool.clone());
    inst.start();
    // Acknowledged while there is room; the next hop is down, so it stays queued.
    let mut c = Client::connect(port);
    c.cmd("EHLO client.test");
    let kept = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: kept\n\nkept\n"));
    wait_for("the message deferred", || (!inst.queue_files("deferred").is_empty()).then_some(()));
    // Fill the file system to the brim.
    let filler = inst.spool.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    while f.write_all(&[0u8; 65536]).is_ok() {}
    let _ = f.write_all(&[0u8; 512]);
    drop(f);
    // MAIL is refused when nothing is free; with a little room, a message that does not fit
    // fails at its end with 452 and leaves no file behind.
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test>"), "452 4.3.1 Insufficient system storage");
    let full_len = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&filler).unwrap().set_len(full_len - 256 * 1024).unwrap();
    let incoming_before = inst.queue_files("incoming").len();
    assert_eq!(c.cmd("MAIL FROM:<s@sender.test>"), "250 2.1.0 Ok");
    c.cmd("RCPT TO:<u@customer.example>");
    c.cmd("DATA");
    c.send_raw(format!("Subject: big\r\n\r\n{}", format!("{}\r\n", "b".repeat(998)).repeat(1024)).as_bytes());
    assert_eq!(c.cmd("."), "452 4.3.1 Insufficient system storage");
    assert_eq!(inst.queue_files("incoming").len(), incoming_before, "no partial file");
    inst.wait_log("warning: queue file write error");
    // Space returns, the next hop comes up: the acknowledged message is delivered once.
    std::fs::remove_file(&filler).unwrap();
    let sink = Sink::start(sink_port);
    let later = queued_id(&c.send_mail("s@sender.test", &["u@customer.example"], "Subject: later\n\nlater\n"));
    assert!(inst.cli("postqueue", &["-f"]).status.success());
    inst.wait_log(&format!("{kept}: removed"));
    inst.wait_log(&format!("{later}: removed"));
    assert_eq!(sink.count_containing("Subject: kept"), 1);
    assert_eq!(sink.count_containing("Subject: later"), 1);
}
