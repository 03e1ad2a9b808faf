//! Queue files and maildrop files as read from disk: any bytes parse or fail cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(qf) = common::queue::file::decode(data, std::path::Path::new("fuzz")) {
        // Whatever parsed must be consistent: results name real recipients.
        assert!(qf.results.iter().all(|r| r.index < qf.envelope.recipients.len()));
        let _ = qf.pending().count();
    }
});
