//! k-means weight sharing of tensors (Deep Compression): a codebook of `2^bits` centroids per
//! tensor (or per output channel) and packed indices, optionally Huffman-coded.

use compress_quant::huffman::{HuffmanEncoded, entropy_bits, frequencies};
use compress_quant::{ClusterConfig, ClusterGranularity, cluster_tensor};
use ndarray::{ArrayViewD, IxDyn};
use serde_json::{Map, json};

use crate::decode::Part;
use crate::error::{CheckpointError, Result};
use crate::format::{Encoding, encode_values, part_name};
use crate::pipeline::{Encoder, Outcome, tensor_err};
use crate::reader::{Dtype, TensorInfo};

/// Options of clustering (the `netcompress cluster` flags).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ClusterOptions {
    /// Bits per index: 2^bits shared values per codebook (1..=8).
    #[cfg_attr(feature = "clap", arg(long))]
    pub bits: u32,
    /// Huffman-code the indices (stored when smaller than the packed indices; the summary
    /// reports both sizes).
    #[cfg_attr(feature = "clap", arg(long))]
    pub huffman: bool,
    /// One codebook per output channel (axis 0) instead of one per tensor.
    #[cfg_attr(feature = "clap", arg(long))]
    pub per_channel: bool,
    /// Keep exact zeros exactly zero (for pruned checkpoints).
    #[cfg_attr(feature = "clap", arg(long))]
    pub preserve_zeros: bool,
    /// Maximum k-means iterations.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 50))]
    pub max_iter: usize,
}

impl ClusterOptions {
    /// One codebook of `2^bits` entries per tensor, packed indices, 50 iterations.
    pub fn new(bits: u32) -> Self {
        Self {
            bits,
            huffman: false,
            per_channel: false,
            preserve_zeros: false,
            max_iter: 50,
        }
    }
}

/// The cluster encoder.
#[derive(Debug, Clone)]
pub struct ClusterEncoder {
    args: ClusterOptions,
    config: ClusterConfig,
}

impl ClusterEncoder {
    /// Validates the options.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::InvalidOption`] for bits outside 1..=8 or an invalid k-means configuration.
    pub fn new(a: &ClusterOptions) -> Result<Self> {
        super::check_bits(a.bits, 1..=8, "1..=8")?;
        let g = if a.per_channel {
            ClusterGranularity::PerChannel
        } else {
            ClusterGranularity::PerTensor
        };
        let config = ClusterConfig::new(1 << a.bits)
            .granularity(g)
            .preserve_sparsity(a.preserve_zeros)
            .max_iter(a.max_iter);
        config
            .validate()
            .map_err(|e| CheckpointError::option("cluster options", e.to_string()))?;
        Ok(Self {
            args: a.clone(),
            config,
        })
    }
}

impl Encoder for ClusterEncoder {
    /// Works from the f32 values alone: the stored bytes are never read a second time.
    fn needs_raw(&self) -> bool {
        false
    }

    fn encode(&mut self, t: &TensorInfo, values: &[f32], _raw: &[u8]) -> Result<Outcome> {
        let view = ArrayViewD::from_shape(IxDyn(&t.shape), values).map_err(|e| tensor_err(t, e))?;
        let c = cluster_tensor(&view, &self.config).map_err(|e| tensor_err(t, e))?;
        let k = c.clusters();
        let bits = c.index_bits();
        let u8d = Dtype::Other("U8", 1);
        let mut extra = Map::new();
        // The packed indices are copied out only when they are what gets stored, and the
        // unpacked codes of the Huffman path are dropped before that: with the input values
        // this keeps a tensor's encoding under three times its f32 size.
        let packed_len = c.indices().bytes();
        extra.insert("packed_index_bytes".into(), json!(packed_len));
        let mut parts = vec![Part::of(
            &t.name,
            "codebook",
            Dtype::F32,
            vec![c.codebook().len()],
            encode_values(c.codebook(), Dtype::F32),
        )];
        let (mut lengths_part, mut hbits) = (None, None);
        let huffman = if self.args.huffman {
            let codes = c.codes();
            let freqs = frequencies(&codes, k).map_err(|e| tensor_err(t, e))?;
            extra.insert(
                "entropy_bytes".into(),
                json!((entropy_bits(&freqs) / 8.0).ceil()),
            );
            let h = HuffmanEncoded::encode(&codes, k).map_err(|e| tensor_err(t, e))?;
            let hbytes = h.as_bytes().len() + k;
            extra.insert("huffman_bytes".into(), json!(hbytes));
            Some((h, hbytes))
        } else {
            None
        };
        let codes_bytes = match huffman {
            Some((h, hbytes)) if hbytes < packed_len => {
                parts.push(Part::of(
                    &t.name,
                    "huffman_lengths",
                    u8d,
                    vec![k],
                    h.code().lengths().to_vec(),
                ));
                lengths_part = Some(part_name(&t.name, "huffman_lengths"));
                hbits = Some(h.bit_len());
                h.as_bytes().to_vec()
            }
            Some(_) => {
                extra.insert(
                    "note".into(),
                    json!("Huffman stream is not smaller; indices stored packed"),
                );
                c.indices().as_bytes().to_vec()
            }
            None => c.indices().as_bytes().to_vec(),
        };
        parts.push(Part::of(
            &t.name,
            "codes",
            u8d,
            vec![codes_bytes.len()],
            codes_bytes,
        ));
        let encoding = Encoding::Cluster {
            bits,
            clusters: k,
            per_channel: self.args.per_channel,
            codebook: part_name(&t.name, "codebook"),
            codes: part_name(&t.name, "codes"),
            huffman_lengths: lengths_part,
            huffman_bits: hbits,
        };
        Ok(Outcome::Encoded {
            encoding,
            parts,
            extra,
        })
    }
}
