//! A `*.safetensors.index.json` over two real one-tensor shards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcompress_fuzz::scratch_dir;

fuzz_target!(|data: &[u8]| {
    if let Err(v) = compress_checkpoint::fuzzing::shard_index(scratch_dir(), data) {
        panic!("{v}");
    }
});
