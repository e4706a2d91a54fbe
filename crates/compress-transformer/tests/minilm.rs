//! The real all-MiniLM-L6-v2 against the transformers reference (needs the model: run
//! `scripts/check-minilm.sh`, or set `MINILM_DIR` and `MINILM_REF` and run this ignored
//! test).

use std::path::PathBuf;

use compress_transformer::{SENTENCES, SentenceEncoder, lines, metrics::cosine_rows};
use ndarray::Array2;

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(default)
        },
        PathBuf::from,
    )
}

#[test]
#[ignore = "needs all-MiniLM-L6-v2 (scripts/fetch-minilm.sh) and its reference embeddings"]
fn minilm_matches_reference_on_every_sentence() {
    let dir = env_path("MINILM_DIR", "models/all-MiniLM-L6-v2");
    let reference = env_path("MINILM_REF", "models/minilm-reference.safetensors");
    let bytes = std::fs::read(&reference).expect("reference embeddings");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("embeddings").unwrap();
    let want: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let want = Array2::from_shape_vec((t.shape()[0], t.shape()[1]), want).unwrap();
    let sentences = lines(SENTENCES);
    assert_eq!(want.nrows(), sentences.len());
    let mut enc = SentenceEncoder::from_dir(&dir).unwrap();
    let got = enc.embed(&sentences).unwrap();
    let cos = cosine_rows(&got.view(), &want.view()).unwrap();
    let (worst, min) =
        cos.iter().enumerate().fold(
            (0, f64::INFINITY),
            |b, (i, &c)| if c < b.1 { (i, c) } else { b },
        );
    let mean = cos.iter().sum::<f64>() / cos.len() as f64;
    println!(
        "MiniLM vs reference: {} sentences, mean cosine {mean:.9}, min {min:.9} (sentence {worst})",
        cos.len()
    );
    assert!(min >= 0.99999, "sentence {worst}: cosine {min}");
}
