//! Nothing acknowledged is lost: while a load client sends 500 messages, smtpd, qmgr and the
//! smtp agent are killed with SIGKILL at random moments; every message that got a 250 reaches
//! the sink (counted by Message-ID).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::smtp::{Sink, free_port};
use crate::harness::{Install, text};

/// Send one message over a fresh connection; true only on a 250 after the final dot.
fn try_send(port: u16, mid: &str) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_nodelay(true);
    let Ok(mut w) = s.try_clone() else { return false };
    let mut r = BufReader::new(s);
    let mut reply = || {
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return String::new(),
                Ok(_) => {}
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return line;
            }
        }
    };
    if !reply().starts_with("220") {
        return false;
    }
    let steps = ["EHLO load.test\r\n", "MAIL FROM:<load@sender.test>\r\n", "RCPT TO:<u@customer.example>\r\n", "DATA\r\n"];
    for (step, want) in steps.iter().zip(["250", "250", "250", "354"]) {
        if w.write_all(step.as_bytes()).is_err() || !reply().starts_with(want) {
            return false;
        }
    }
    let msg = format!("Subject: load\r\nMessage-ID: <{mid}>\r\n\r\n{}\r\n.\r\n", "x".repeat(4000));
    if w.write_all(msg.as_bytes()).is_err() {
        return false;
    }
    let ok = reply().starts_with("250 2.0.0 Ok: queued as");
    let _ = w.write_all(b"QUIT\r\n");
    ok
}

#[test]
fn kill_9_during_load_loses_no_acknowledged_message() {
    let sink = Sink::start(free_port());
    let (inst, port) = Install::mail_system("service_throttle_time = 1s\n", sink.port);
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        let killer = {
            let (done, kills, inst) = (done.clone(), kills.clone(), &inst);
            s.spawn(move || {
                let mut n: u64 = 7;
                while !done.load(Ordering::Relaxed) {
                    // A cheap pseudo-random sequence: which daemon, and how long to wait.
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let program = ["smtpd", "qmgr", "smtp"][(n >> 33) as usize % 3];
                    std::thread::sleep(Duration::from_millis(10 + (n >> 40) % 50));
                    if let Some(pid) = inst.program_pid(program) {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                        kills.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let senders: Vec<_> = (0..4)
            .map(|t| {
                let accepted = accepted.clone();
                s.spawn(move || {
                    for i in 0..125 {
                        let mid = format!("load-{t}-{i}@test");
                        // Retry until acknowledged; a message that never got 250 is not counted.
                        for _ in 0..50 {
                            if try_send(port, &mid) {
                                accepted.lock().unwrap().push(mid.clone());
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                })
            })
            .collect();
        for h in senders {
            h.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        killer.join().unwrap();
    });
    let accepted: Vec<String> = accepted.lock().unwrap().clone();
    eprintln!("accepted {} of 500 messages while killing daemons {} times", accepted.len(), kills.load(Ordering::Relaxed));
    assert!(accepted.len() >= 450, "only {} of 500 messages were accepted", accepted.len());
    assert!(kills.load(Ordering::Relaxed) >= 10, "the test killed too little");

    // Deferrals caused by a killed agent wait for their retry time: ask for delivery now.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got: HashSet<String> =
            sink.messages().iter().filter_map(|m| m.data.split("Message-ID: <").nth(1)?.split('>').next().map(str::to_string)).collect();
        let missing: Vec<&String> = accepted.iter().filter(|m| !got.contains(*m)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged messages never arrived, e.g. {:?}\n{}",
            missing.len(),
            &missing[..missing.len().min(5)],
            text(&inst.cli("postqueue", &["-p"]).stdout)
        );
        let _ = inst.cli("postqueue", &["-f"]);
        std::thread::sleep(Duration::from_millis(500));
    }
    // Nothing is left in the queue either (maybe a duplicate delivery, never a loss).
    assert!(inst.queue_files("corrupt").is_empty(), "{:?}", inst.queue_files("corrupt"));
}
