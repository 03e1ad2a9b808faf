//! Queue files and the active queue: a torn result record in the middle of a queue file does
//! not make it unreadable, a file that cannot be read now is not corrupt, and the queue
//! manager keeps envelopes, not messages, in memory.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use common::queue::file::{ClientInfo, Envelope, Outcome, Recipient, RecipientResult, append_result, now_us, write_new};
use common::queue::{QueueId, QueueName, Spool};

use crate::harness::smtp::{Sink, free_port};
use crate::harness::{Install, text, wait_for};

fn spool(inst: &Install) -> Spool {
    Spool::new(inst.spool.clone(), &["deferred".into(), "defer".into()], 1)
}

fn envelope(recipients: &[&str]) -> Envelope {
    Envelope {
        sender: "s@sender.test".into(),
        recipients: recipients.iter().map(|r| Recipient { address: r.to_string(), ..Default::default() }).collect(),
        arrival_us: now_us(),
        client: ClientInfo { name: "localhost".into(), addr: "127.0.0.1".into(), helo: "client.test".into(), protocol: "ESMTP".into() },
        ..Default::default()
    }
}

/// Hand a file prepared in `hold` to the queue manager.
fn release(inst: &Install, spool: &Spool, id: &QueueId) {
    assert!(spool.move_file(id, QueueName::Hold, QueueName::Incoming).unwrap());
    let out = inst.cli("postqueue", &["-f"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_torn_result_record_in_the_middle_of_a_queue_file_is_skipped() {
    let sink = Sink::start(free_port());
    let (inst, _port) = Install::mail_system("", sink.port);
    let spool = spool(&inst);
    let rcpts = ["done@customer.example", "torn@customer.example", "later@customer.example"];
    let id = write_new(&spool, QueueName::Hold, &envelope(&rcpts), b"Subject: torn\r\nMessage-ID: <torn@test>\r\n\r\nbody\r\n").unwrap();
    let path = spool.path(QueueName::Hold, &id);
    let result = |index, outcome| RecipientResult { index, outcome, dsn: "4.4.1".into(), text: "earlier attempt".into() };
    append_result(&path, &result(0, Outcome::Sent)).unwrap();
    // A crash in the middle of an append, then another delivery attempt's records after it.
    OpenOptions::new().append(true).open(&path).unwrap().write_all(b"R {\"index\":1,\"outcome\":\"se").unwrap();
    append_result(&path, &result(2, Outcome::Deferred)).unwrap();
    release(&inst, &spool, &id);
    inst.wait_log(&format!("{id}: removed"));
    inst.wait_log(&format!("warning: {id}: skipped 1 torn delivery status record(s) in the queue file"));
    let got = sink.messages();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].recipients, vec![rcpts[1].to_string(), rcpts[2].to_string()], "the recipient already sent is not sent again");
    assert!(inst.queue_files("corrupt").is_empty(), "{:?}", inst.queue_files("corrupt"));
}

/// A copy of `from` at `to` that leaves runs of zeros as holes, so that many large queue files
/// cost the disk almost nothing: `chunks` is `from` as (offset, bytes) for its non-zero pieces.
fn sparse_copy(chunks: &[(u64, Vec<u8>)], len: u64, to: &std::path::Path) {
    let mut f = OpenOptions::new().write(true).create_new(true).open(to).unwrap();
    for (at, bytes) in chunks {
        f.seek(SeekFrom::Start(*at)).unwrap();
        f.write_all(bytes).unwrap();
    }
    f.set_len(len).unwrap();
}

fn non_zero_chunks(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    const CHUNK: usize = 4096;
    bytes.chunks(CHUNK).enumerate().filter(|(_, c)| c.iter().any(|&b| b != 0)).map(|(i, c)| ((i * CHUNK) as u64, c.to_vec())).collect()
}

fn vm_rss_kb(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Messages in the active queue at once, each of `MESSAGE_SIZE` bytes.
const MESSAGES: usize = 1000;
const MESSAGE_SIZE: usize = 10 * 1024 * 1024;

#[test]
fn qmgr_memory_stays_envelope_sized_with_a_thousand_active_10mb_messages() {
    // The sink holds every delivery, so that all the messages stay active while we look.
    let sink = Sink::start(free_port());
    sink.data_delay_ms.store(600_000, Ordering::Relaxed);
    let (inst, _port) = Install::mail_system("", sink.port);
    let spool = spool(&inst);
    // One real 10 MB queue file, then sparse copies of it under new queue IDs: the queue
    // manager sees 1,000 files of 10 MB (10 GB), the disk holds a few MB.
    let mut message = b"Subject: big\r\n\r\n".to_vec();
    message.resize(MESSAGE_SIZE, 0);
    let first = write_new(&spool, QueueName::Hold, &envelope(&["big@customer.example"]), &message).unwrap();
    drop(message);
    let bytes = fs::read(spool.path(QueueName::Hold, &first)).unwrap();
    let (chunks, len) = (non_zero_chunks(&bytes), bytes.len() as u64);
    drop(bytes);
    let mut ids = vec![first];
    for n in 1..MESSAGES as u64 {
        // IDs that no real file can have (inode numbers far above any in use here).
        let id = QueueId::generate(SystemTime::now(), (1 << 40) + n);
        sparse_copy(&chunks, len, &spool.path(QueueName::Hold, &id));
        ids.push(id);
    }
    for id in &ids {
        assert!(spool.move_file(id, QueueName::Hold, QueueName::Incoming).unwrap());
    }
    let out = inst.cli("postqueue", &["-f"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for("every message to be active", || (inst.log_count("(queue active)") >= MESSAGES).then_some(()));
    let qmgr = inst.program_pid("qmgr").unwrap();
    let rss_kb = vm_rss_kb(qmgr);
    eprintln!("qmgr VmRSS with {MESSAGES} active messages of {MESSAGE_SIZE} bytes: {rss_kb} kB");
    // The bound stated in qmgr's manual: 16 MiB, plus 4 KiB per active message of a few
    // recipients, whatever the message size (measured: about 6 MiB plus 1.2 KiB per message).
    let bound_kb = 16 * 1024 + 4 * MESSAGES as u64;
    assert!(rss_kb < bound_kb, "qmgr uses {rss_kb} kB, over its bound of {bound_kb} kB");
    assert_eq!(inst.queue_files("active").len(), MESSAGES);
    assert!(inst.queue_files("corrupt").is_empty());
}

#[test]
fn a_queue_file_qmgr_cannot_read_now_is_retried_not_corrupt() {
    crate::harness::require_root("this test runs the services as nobody");
    let sink = Sink::start(free_port());
    let port = free_port();
    let mut inst = Install::new(&format!("relayhost = [127.0.0.1]:{}\n", sink.port), &crate::harness::mail_system_master_cf(port));
    inst.run_services_as_nobody();
    inst.start();
    // A queue file qmgr cannot open (root's, mode 0600): a read error, not corruption.
    let spool = spool(&inst);
    let id = write_new(&spool, QueueName::Hold, &envelope(&["u@customer.example"]), b"Subject: later\r\n\r\nbody\r\n").unwrap();
    release(&inst, &spool, &id);
    let warning = inst.wait_log(&format!("warning: {id}: cannot read the queue file now, left in incoming for a later scan: "));
    assert!(warning.contains("Permission denied"), "{warning}");
    assert!(inst.queue_files("corrupt").is_empty(), "{:?}", inst.queue_files("corrupt"));
    let path = spool.path(QueueName::Incoming, &id);
    assert!(path.exists(), "left where it came from");
    // Once it can be read, the next scan delivers it.
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    nix::unistd::chown(&path, Some(nobody.uid), Some(nobody.gid)).unwrap();
    let out = inst.cli("postqueue", &["-f"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    inst.wait_log(&format!("{id}: removed"));
    assert_eq!(sink.count(), 1);
}
