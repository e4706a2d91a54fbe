//! Writes a generated, transformer-shaped safetensors checkpoint for trying and measuring the
//! file commands (nothing is downloaded; values are seeded pseudo-random weights).
//!
//! ```text
//! cargo run --release -p netcompress-cli --example make_checkpoint -- OUT.safetensors [small|1gib] [SHARDS]
//! ```
//!
//! `small` (default) is the ~0.8 M-parameter model of the integration tests; `1gib` is a
//! 1.0 GiB checkpoint (BF16 embeddings and head, F32 attention, F16 MLP, F32 norms, I64 ids)
//! used for the peak-memory and throughput figures. With `SHARDS > 1`, OUT must end in
//! `.safetensors.index.json` and the shards are written beside it.

#[path = "../tests/fixtures.rs"]
mod fixtures;

use fixtures::{Spec, model_specs, push_decoder_layer, spec, write_safetensors, write_sharded};

fn one_gib() -> Vec<Spec> {
    let (d, ff, vocab) = (2048, 5632, 16384);
    let mut v = vec![
        spec("model.embed_tokens.weight", "BF16", &[vocab, 4096]),
        spec("model.position_ids", "I64", &[1, 4096]),
    ];
    for l in 0..6 {
        push_decoder_layer(&mut v, l, d, ff, false);
    }
    v.push(spec("model.norm.weight", "F32", &[d]));
    v.push(spec("lm_head.weight", "BF16", &[vocab, 4096]));
    v
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: make_checkpoint OUT.safetensors [small|1gib] [SHARDS]");
        std::process::exit(2);
    };
    let specs = match args.get(1).map(String::as_str) {
        None | Some("small") => model_specs(),
        Some("1gib") => one_gib(),
        Some(other) => {
            eprintln!("unknown preset `{other}` (small or 1gib)");
            std::process::exit(2);
        }
    };
    let shards: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let out = std::path::Path::new(out);
    if shards > 1 {
        let name = out
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("model.safetensors.index.json");
        let stem = name
            .trim_end_matches(".index.json")
            .trim_end_matches(".safetensors");
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let index = write_sharded(dir, stem, &specs, shards, 1);
        println!("wrote {}", index.display());
    } else {
        write_safetensors(out, &specs, 1);
        println!("wrote {}", out.display());
    }
}
