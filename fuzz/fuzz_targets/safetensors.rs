//! A safetensors file: header length, header JSON, offsets and data, opened and read whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcompress_fuzz::scratch_dir;

fuzz_target!(|data: &[u8]| {
    if let Err(v) = compress_checkpoint::fuzzing::safetensors_file(scratch_dir(), data) {
        panic!("{v}");
    }
});
