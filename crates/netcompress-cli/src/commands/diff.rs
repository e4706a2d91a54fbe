//! `netcompress diff A B`: per-tensor relative error, SQNR, cosine similarity and totals between
//! two checkpoints with the same tensor names. Either side may be a netcompress-compressed file:
//! its tensors are decoded on the fly (so `diff original.safetensors quantized.safetensors`
//! measures the quantization error directly).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use compress_checkpoint::decode::decode;
use compress_checkpoint::format::{TensorMeta, tensor_metas};
use compress_checkpoint::{
    CheckpointError, ErrMetrics, ErrSums, SafetensorsFile, TensorInfo, open_checkpoint,
};

use crate::error::Result;

/// Arguments of `diff`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DiffArgs {
    /// Reference checkpoint (.safetensors or *.index.json).
    pub(crate) a: PathBuf,
    /// Checkpoint compared against it.
    pub(crate) b: PathBuf,
    /// Print one JSON object as the last line.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A logical tensor: stored as is, or compressed.
#[derive(Debug, Clone)]
enum Kind {
    Raw(TensorInfo),
    Encoded(TensorMeta),
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    file: usize,
    kind: Kind,
}

impl Entry {
    fn dtype(&self) -> String {
        match &self.kind {
            Kind::Raw(t) => t.dtype.name().to_string(),
            Kind::Encoded(m) => m.dtype.clone(),
        }
    }

    fn shape(&self) -> &[usize] {
        match &self.kind {
            Kind::Raw(t) => &t.shape,
            Kind::Encoded(m) => &m.shape,
        }
    }

    fn is_float(&self) -> bool {
        match &self.kind {
            Kind::Raw(t) => t.dtype.is_float(),
            Kind::Encoded(_) => true,
        }
    }
}

/// A checkpoint seen as its logical tensors (compressed tensors decoded).
#[derive(Debug)]
pub(crate) struct Logical {
    files: Vec<SafetensorsFile>,
    entries: Vec<Entry>,
}

/// Data of one logical tensor.
enum Data {
    Float(Vec<f32>),
    Raw(Vec<u8>),
}

impl Logical {
    /// Opens every shard of `path` and lists its logical tensors.
    ///
    /// # Errors
    ///
    /// Reading or metadata errors.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut files = Vec::new();
        let mut entries = Vec::new();
        for (i, f) in open_checkpoint(path)?.into_iter().enumerate() {
            let metas = tensor_metas(&f.metadata)
                .map_err(|(field, r)| CheckpointError::format(f.path(), field, r))?;
            let parts: HashMap<&str, &str> = metas
                .iter()
                .flat_map(|(n, m)| m.encoding.parts().into_iter().map(move |p| (p, n.as_str())))
                .collect();
            let mut seen = std::collections::HashSet::new();
            for t in &f.tensors {
                let kind = match parts.get(t.name.as_str()) {
                    Some(owner) if seen.insert(*owner) => Kind::Encoded(metas[*owner].clone()),
                    Some(_) => continue,
                    None => Kind::Raw(t.clone()),
                };
                let name = match &kind {
                    Kind::Raw(t) => t.name.clone(),
                    Kind::Encoded(_) => parts[t.name.as_str()].to_string(),
                };
                entries.push(Entry {
                    name,
                    file: i,
                    kind,
                });
            }
            files.push(f);
        }
        Ok(Self { files, entries })
    }

    fn read(&mut self, e: &Entry) -> Result<Data> {
        let f = &mut self.files[e.file];
        match &e.kind {
            Kind::Raw(t) => Ok(match f.read_f32(t)? {
                Some(v) => Data::Float(v),
                None => Data::Raw(f.read_raw(t)?),
            }),
            Kind::Encoded(m) => decode(m, f).map(Data::Float).map_err(|r| {
                CheckpointError::format(f.path(), format!("tensor `{}`", e.name), r).into()
            }),
        }
    }
}

/// One tensor's comparison.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TensorDiff {
    /// Name.
    pub(crate) name: String,
    /// `compared`, `only_a`, `only_b`, `shape_mismatch` or `dtype_mismatch`.
    pub(crate) status: &'static str,
    /// dtype in A.
    pub(crate) dtype_a: Option<String>,
    /// dtype in B.
    pub(crate) dtype_b: Option<String>,
    /// Shape in A (or B when only there).
    pub(crate) shape: Vec<usize>,
    /// Metrics for compared float tensors.
    #[serde(flatten)]
    pub(crate) error: Option<ErrMetrics>,
    /// Byte equality for compared non-float tensors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) equal: Option<bool>,
}

/// Totals of a diff.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct DiffTotals {
    /// Tensors compared.
    pub(crate) compared: usize,
    /// Compared tensors that are identical.
    pub(crate) identical: usize,
    /// Compared tensors that differ.
    pub(crate) differing: usize,
    /// Names only in A.
    pub(crate) only_a: usize,
    /// Names only in B.
    pub(crate) only_b: usize,
    /// Shape or dtype-kind mismatches.
    pub(crate) mismatched: usize,
    /// Mean SQNR over differing float tensors.
    pub(crate) mean_sqnr_db: Option<f64>,
    /// Lowest SQNR.
    pub(crate) min_sqnr_db: Option<f64>,
    /// SQNR of all float tensors together.
    pub(crate) total_sqnr_db: Option<f64>,
    /// Largest relative error.
    pub(crate) max_rel_error: Option<f64>,
    /// Lowest cosine similarity.
    pub(crate) min_cosine: Option<f64>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DiffReport {
    /// Path A.
    pub(crate) a: String,
    /// Path B.
    pub(crate) b: String,
    /// Per tensor, in A's order then B-only names.
    pub(crate) tensors: Vec<TensorDiff>,
    /// Totals.
    pub(crate) totals: DiffTotals,
}

fn row(name: &str, status: &'static str, a: Option<&Entry>, b: Option<&Entry>) -> TensorDiff {
    TensorDiff {
        name: name.to_string(),
        status,
        dtype_a: a.map(Entry::dtype),
        dtype_b: b.map(Entry::dtype),
        shape: a.or(b).map(|e| e.shape().to_vec()).unwrap_or_default(),
        error: None,
        equal: None,
    }
}

/// Error sums of two stored float tensors of the same element count, read in chunks.
fn chunked_sums(
    fa: &mut SafetensorsFile,
    ta: &TensorInfo,
    fb: &mut SafetensorsFile,
    tb: &TensorInfo,
) -> Result<ErrSums> {
    let n = ta.numel();
    let (mut sa, mut sb, mut xa, mut xb) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut sums = ErrSums::default();
    let mut start = 0;
    while start < n {
        let count = (1usize << 20).min(n - start);
        fa.read_f32_range(ta, start, count, &mut sa, &mut xa)?;
        fb.read_f32_range(tb, start, count, &mut sb, &mut xb)?;
        sums.add(&ErrSums::of(&xa, &xb));
        start += count;
    }
    Ok(sums)
}

/// Compares the checkpoints at `a` and `b`.
///
/// # Errors
///
/// Reading or decoding errors.
pub(crate) fn diff(a: &Path, b: &Path) -> Result<DiffReport> {
    let mut la = Logical::open(a)?;
    let mut lb = Logical::open(b)?;
    let index: HashMap<String, usize> = lb
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.clone(), i))
        .collect();
    let mut used = vec![false; lb.entries.len()];
    let (mut rows, mut t, mut all) = (Vec::new(), DiffTotals::default(), ErrSums::default());
    for ea in la.entries.clone() {
        let Some(&ib) = index.get(&ea.name) else {
            t.only_a += 1;
            rows.push(row(&ea.name, "only_a", Some(&ea), None));
            continue;
        };
        used[ib] = true;
        let eb = lb.entries[ib].clone();
        if ea.shape() != eb.shape() {
            t.mismatched += 1;
            rows.push(row(&ea.name, "shape_mismatch", Some(&ea), Some(&eb)));
            continue;
        }
        if ea.is_float() != eb.is_float() {
            t.mismatched += 1;
            rows.push(row(&ea.name, "dtype_mismatch", Some(&ea), Some(&eb)));
            continue;
        }
        let mut r = row(&ea.name, "compared", Some(&ea), Some(&eb));
        t.compared += 1;
        if let (Kind::Raw(ta), Kind::Raw(tb)) = (&ea.kind, &eb.kind)
            && ta.dtype.is_float()
            && tb.dtype.is_float()
        {
            // Stored floats on both sides: compared in chunks, memory stays small.
            let s = chunked_sums(&mut la.files[ea.file], ta, &mut lb.files[eb.file], tb)?;
            all.add(&s);
            let m = s.metrics();
            r.error = Some(m);
            if m.identical {
                t.identical += 1;
            } else {
                t.differing += 1;
            }
            rows.push(r);
            continue;
        }
        let same = match (la.read(&ea)?, lb.read(&eb)?) {
            (Data::Float(x), Data::Float(y)) => {
                let s = ErrSums::of(&x, &y);
                all.add(&s);
                let m = s.metrics();
                r.error = Some(m);
                m.identical
            }
            (Data::Raw(x), Data::Raw(y)) => {
                let eq = x == y && ea.dtype() == eb.dtype();
                r.equal = Some(eq);
                eq
            }
            _ => false,
        };
        if same {
            t.identical += 1;
        } else {
            t.differing += 1;
        }
        rows.push(r);
    }
    for (i, eb) in lb.entries.iter().enumerate() {
        if !used[i] {
            t.only_b += 1;
            rows.push(row(&eb.name, "only_b", None, Some(eb)));
        }
    }
    let errs: Vec<ErrMetrics> = rows
        .iter()
        .filter_map(|r| r.error)
        .filter(|e| !e.identical)
        .collect();
    let sq: Vec<f64> = errs.iter().filter_map(|e| e.sqnr_db).collect();
    if !sq.is_empty() {
        t.mean_sqnr_db = Some(sq.iter().sum::<f64>() / sq.len() as f64);
        t.min_sqnr_db = sq.iter().copied().reduce(f64::min);
    }
    t.total_sqnr_db = all.metrics().sqnr_db;
    t.max_rel_error = rows
        .iter()
        .filter_map(|r| r.error.and_then(|e| e.rel_error))
        .reduce(f64::max);
    t.min_cosine = rows
        .iter()
        .filter_map(|r| r.error.map(|e| e.cosine))
        .reduce(f64::min);
    Ok(DiffReport {
        a: a.display().to_string(),
        b: b.display().to_string(),
        tensors: rows,
        totals: t,
    })
}

/// Runs `diff`.
///
/// # Errors
///
/// As [`diff`].
pub(crate) fn run(args: &DiffArgs) -> Result<()> {
    let r = diff(&args.a, &args.b)?;
    let w = super::name_column(r.tensors.iter().map(|d| d.name.as_str()));
    println!(
        "{:<w$} {:<11} {:<18} {:>9} {:>10} {:>9} {:>10}",
        "tensor", "dtype", "shape", "SQNR dB", "rel err", "cosine", "max |err|"
    );
    for d in &r.tensors {
        let dt = match (&d.dtype_a, &d.dtype_b) {
            (Some(x), Some(y)) if x == y => x.clone(),
            (x, y) => format!(
                "{}/{}",
                x.as_deref().unwrap_or("-"),
                y.as_deref().unwrap_or("-")
            ),
        };
        let cols = match (d.status, d.error, d.equal) {
            ("compared", Some(e), _) if e.nonfinite > 0 => format!(
                "{:>9} {:>10} {:>9} {:>10}  ({} NaN/inf positions differ)",
                "-", "inf", "-", "-", e.nonfinite
            ),
            ("compared", Some(e), _) if e.identical => {
                format!("{:>9} {:>10} {:>9} {:>10}", "exact", "0", "1", "0")
            }
            ("compared", Some(e), _) => format!(
                "{:>9} {:>10} {:>9.6} {:>10.3e}",
                e.sqnr_db.map_or_else(|| "-".into(), |v| format!("{v:.2}")),
                e.rel_error
                    .map_or_else(|| "inf".into(), |v| format!("{v:.3e}")),
                e.cosine,
                e.max_abs_error
            ),
            ("compared", None, Some(eq)) => (if eq { "equal" } else { "DIFFERENT" }).to_string(),
            (s, _, _) => s.to_string(),
        };
        println!(
            "{:<w$} {:<11} {:<18} {cols}",
            d.name,
            dt,
            format!("{:?}", d.shape)
        );
    }
    let t = &r.totals;
    let db = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2} dB"));
    println!(
        "diff: {} compared ({} identical, {} differing), {} only in A, {} only in B, {} mismatched; mean SQNR {}, min {}, overall {}",
        t.compared,
        t.identical,
        t.differing,
        t.only_a,
        t.only_b,
        t.mismatched,
        db(t.mean_sqnr_db),
        db(t.min_sqnr_db),
        db(t.total_sqnr_db)
    );
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    }
    Ok(())
}
