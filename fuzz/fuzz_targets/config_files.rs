//! main.cf and master.cf text: parse or fail with a file and line, then expand every value
//! (bounded recursion) without a panic.
#![no_main]

use std::path::Path;

use common::config::{MainCf, MasterCf, Params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(main) = MainCf::parse(text, Path::new("main.cf")) {
        let names: Vec<String> = main.sorted().iter().map(|s| s.name.clone()).collect();
        let p = Params::from_parts(Path::new("/nonexistent"), main, &[]);
        for n in names {
            let _ = p.get(&n);
        }
    }
    let _ = MasterCf::parse(text, Path::new("master.cf"));
});
