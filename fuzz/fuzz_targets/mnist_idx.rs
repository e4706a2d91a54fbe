//! An MNIST IDX file, read as images and as labels; the first byte picks plain or gzip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netcompress_fuzz::scratch_dir;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if let Err(e) = compress_nn::data::fuzzing::idx_file(scratch_dir(), rest, mode & 1 == 1) {
        panic!("{e}");
    }
});
