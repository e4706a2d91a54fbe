//! Model directories whose linear layers are 2:4 sparse: written by `netcompress prune
//! MODEL_DIR OUT_DIR --pattern 2:4`, loaded by `embed` and `eval`
//! (`compress_checkpoint::model_dir`) with those layers as [`Sparse24Linear`]s (the 2:4
//! kernel), not dense.
//!
//! Layout: the tokenizer and settings files of the original, `config.json`, and one
//! `model.safetensors` in the checkpoint format (docs/format.md): each 2:4 weight as a
//! `sparse` tensor (a keep bitmask, one bit per weight, which for 2:4 is exactly two 2-bit
//! positions per kept pair, and the kept values) with the kernel marker
//! `netcompress.kernel.PATH = sparse-2:4`, every other parameter as plain F32. So
//! `netcompress inspect` and `dequantize` read it like any compressed checkpoint.

use std::path::Path;

use compress_checkpoint::format::{
    COMMAND_KEY, Encoding, FORMAT_KEY, FORMAT_VERSION, TENSOR_KEY_PREFIX, TensorMeta, part_name,
};
use compress_checkpoint::model_dir::{KERNEL_KEY_PREFIX, SPARSE24_KERNEL, nm24_mask};
use compress_checkpoint::{CheckpointError, ShardWriter, commit, f32_bytes};
use compress_core::surgery::find_layer;
use compress_core::{Layer, Module};
use compress_prune::Sparse24Linear;
use compress_transformer::BertModel;
use compress_transformer::io::copy_tokenizer_files;

use super::command_line;
use crate::error::{CliError, Result};

/// The weights file of a model directory.
const WEIGHTS: &str = "model.safetensors";

/// Writes `model` (its [`Sparse24Linear`] layers compressed) with `config.json` and the
/// tokenizer files of `src` into `out`, which must not exist yet: everything goes to a
/// temporary sibling directory renamed into place at the end, so a failure leaves nothing.
///
/// # Errors
///
/// I/O and format errors naming the file.
pub(crate) fn save_model_dir(model: &BertModel<f32>, src: &Path, out: &Path) -> Result<u64> {
    let tmp = out.with_file_name(format!(
        ".{}.tmp-{}",
        out.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    let res = (|| -> Result<u64> {
        std::fs::create_dir_all(&tmp).map_err(|e| CheckpointError::io(&tmp, e))?;
        copy_tokenizer_files(src, &tmp)?;
        let cfg = serde_json::to_string_pretty(&model.config.to_json())?;
        std::fs::write(tmp.join("config.json"), cfg).map_err(|e| CheckpointError::io(&tmp, e))?;
        let path = tmp.join(WEIGHTS);
        let mut w = ShardWriter::with_reserve(&path, 0)?;
        w.set_metadata(FORMAT_KEY, FORMAT_VERSION);
        w.set_metadata(COMMAND_KEY, command_line());
        let mut sparse_paths = Vec::new();
        compress_core::surgery::walk_layers(model as &dyn Layer<f32>, &mut |p, l| {
            if l.as_any().downcast_ref::<Sparse24Linear<f32>>().is_some() {
                sparse_paths.push(p.to_string());
            }
        });
        for path in &sparse_paths {
            let layer = find_layer(model as &dyn Layer<f32>, path)
                .and_then(|l| l.as_any().downcast_ref::<Sparse24Linear<f32>>())
                .ok_or_else(|| CliError::Usage(format!("layer {path} vanished")))?;
            let m = layer.to_matrix();
            let (rows, cols) = m.dim();
            let name = format!("{path}.weight");
            let (mask, values) = (part_name(&name, "mask"), part_name(&name, "values"));
            w.add(&mask, "U8", &[(rows * cols).div_ceil(8)], &nm24_mask(&m))?;
            w.add(&values, "F32", &[m.values().len()], &f32_bytes(m.values()))?;
            let meta = TensorMeta {
                dtype: "F32".into(),
                shape: vec![rows, cols],
                encoding: Encoding::Sparse {
                    nnz: m.values().len(),
                    mask,
                    values,
                },
            };
            w.set_metadata(
                format!("{TENSOR_KEY_PREFIX}{name}"),
                serde_json::to_string(&meta)?,
            );
            w.set_metadata(format!("{KERNEL_KEY_PREFIX}{path}"), SPARSE24_KERNEL);
        }
        for (name, value) in model.state_dict() {
            if name.ends_with(".values")
                && sparse_paths.iter().any(|p| name == format!("{p}.values"))
            {
                continue;
            }
            let v = value.as_standard_layout();
            let v = v.as_slice().unwrap_or_default();
            w.add(&name, "F32", value.shape(), &f32_bytes(v))?;
        }
        commit(vec![w.assemble()?])?;
        if out.exists() {
            std::fs::remove_dir_all(out).map_err(|e| CheckpointError::io(out, e))?;
        }
        std::fs::rename(&tmp, out).map_err(|e| CheckpointError::io(out, e))?;
        Ok(compress_transformer::io::dir_bytes(out)?)
    })();
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    res
}
