//! A compressed tensor's `netcompress.tensor.NAME` description (docs/format.md) over a fixed
//! set of parts, parsed and dequantized. The first byte picks the format version.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcompress_fuzz::scratch_dir;

fuzz_target!(|data: &[u8]| {
    let Some((&v, rest)) = data.split_first() else {
        return;
    };
    let version = match v % 8 {
        0 => "2",
        1 => "",
        _ => "1",
    };
    // Metadata values are JSON strings: only UTF-8 text reaches the description parser.
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let Err(e) = compress_checkpoint::fuzzing::tensor_description(scratch_dir(), version, text) {
        panic!("{e}");
    }
});
