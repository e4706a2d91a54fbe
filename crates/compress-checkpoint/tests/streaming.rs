//! The streamed low-rank paths (the error measured block by block while compressing, the
//! dequantized tensor written block by block) give exactly what the whole-tensor decoder gives.

use compress_checkpoint::decode::decode;
use compress_checkpoint::format::tensor_metas;
use compress_checkpoint::{
    ErrSums, LowrankOptions, SafetensorsFile, ShardWriter, commit, dequantize_file, f32_bytes,
    lowrank_file,
};

use crate::model::Dir;

#[test]
fn streamed_lowrank_output_equals_the_whole_decode() {
    let dir = Dir::new("stream-lowrank");
    // More rows than one decode block (2^20 values) holds, so several blocks are written.
    let (m, cols) = (8300, 130);
    let w: Vec<f32> = (0..m * cols)
        .map(|i| {
            let (r, c) = ((i / cols) as f32, (i % cols) as f32);
            (r * 0.001).sin() * (c * 0.05).cos() + 0.01 * ((i * 37 % 101) as f32 / 101.0)
        })
        .collect();
    let input = dir.join("in.safetensors");
    let mut writer = ShardWriter::with_reserve(&input, 0).unwrap();
    writer.add("w", "F32", &[m, cols], &f32_bytes(&w)).unwrap();
    commit(vec![writer.assemble().unwrap()]).unwrap();

    let low = dir.join("low.safetensors");
    let opts = LowrankOptions {
        energy: None,
        rank: Some(3),
        exact: true,
    };
    let summary = lowrank_file(&input, &low, &opts).unwrap();
    assert_eq!(summary.totals.transformed, 1);

    // The whole-tensor decode of what was written.
    let mut f = SafetensorsFile::open(&low).unwrap();
    let metas = tensor_metas(&f.metadata).unwrap();
    let whole = decode(&metas["w"], &mut f).unwrap();
    assert_eq!(whole.len(), m * cols);

    // The error reported while compressing was measured block by block on the same values.
    let reported = summary.tensors[0].error.unwrap();
    let expected = ErrSums::of(&w, &whole).metrics();
    let (a, b) = (reported.sqnr_db.unwrap(), expected.sqnr_db.unwrap());
    assert!((a - b).abs() < 1e-9 * b.abs(), "{a} vs {b}");
    assert_eq!(reported.max_abs_error, expected.max_abs_error);

    // dequantize writes the blocks: bit for bit the whole decode.
    let out = dir.join("out.safetensors");
    dequantize_file(&low, &out).unwrap();
    let mut d = SafetensorsFile::open(&out).unwrap();
    let t = d.tensors.iter().find(|t| t.name == "w").unwrap().clone();
    assert_eq!(t.shape, vec![m, cols]);
    let back = d.read_f32(&t).unwrap().unwrap();
    assert!(
        back.iter()
            .zip(&whole)
            .all(|(x, y)| x.to_bits() == y.to_bits())
    );
}
