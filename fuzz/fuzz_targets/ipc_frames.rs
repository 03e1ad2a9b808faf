//! IPC frames from a local peer: length-prefixed JSON for every protocol a public socket
//! serves; any bytes give a request or a clean error.
#![no_main]

use common::ipc::MAX_FRAME;
use common::ipc::flush::FlushRequest;
use common::ipc::frame::read_frame_blocking;
use common::ipc::trigger::Trigger;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok(Some(_)) = read_frame_blocking::<FlushRequest, _>(&mut r, MAX_FRAME) {}
    let mut r = data;
    while let Ok(Some(_)) = read_frame_blocking::<Vec<Trigger>, _>(&mut r, MAX_FRAME) {}
});
