//! `distill-minilm`: all-MiniLM-L6-v2 (6 layers) distilled into students of 3 and 2 layers
//! on unlabeled sentences, with an ablation of the objectives, fidelity to the teacher on
//! held-back sentences and the measured speed-up.

use std::path::Path;
use std::time::Instant;

use compress_core::{Layer, Mode, ModelStats, Precision};
use compress_distill::{
    EmbeddingObjective, FitReport, SequenceDistillConfig, SequenceDistiller, SequenceEncoder,
};
use compress_nn::PoolingKind;
use compress_transformer::{
    BertModel, BertTokenizer, Fidelity, PooledBert, SENTENCES, SentenceEncoder, every_kth_layer,
    fidelity, lines, truncated_student,
};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use serde::Serialize;
use serde_json::json;

use super::{Ctx, Metrics, Report};
use crate::error::{CliError, Result};

/// Every `HELD_EVERY`-th shipped sentence (index `i % 5 == 4`) is held back.
const HELD_EVERY: usize = 5;
/// Every `VAL_EVERY`-th of the remaining shipped sentences is validation: the 3-layer
/// student composed with int8 is the objective with the best validation cosine.
const VAL_EVERY: usize = 6;
/// Training length: 12 epochs of the shipped training sentences, and at least one pass
/// over a larger `--train-file` (epochs = this many examples / training sentences, 1..=12).
const EXAMPLE_BUDGET: usize = 12 * 200;
/// Batch and padded length of the speed measurement.
const SPEED_SHAPE: (usize, usize) = (32, 128);

/// One row of the ablation table.
#[derive(Debug, Clone, Serialize)]
struct Row {
    layers: usize,
    objective: String,
    mean_cosine: f64,
    min_cosine: f64,
    top1_agreement: f64,
    spearman: f64,
    speedup: f64,
    train_seconds: f64,
    examples_per_sec: f64,
    epochs: usize,
}

/// The objectives of the ablation, in table order.
fn objectives() -> Vec<(&'static str, EmbeddingObjective)> {
    let cos = EmbeddingObjective::default();
    vec![
        ("mse", EmbeddingObjective::mse_only()),
        ("cosine", cos),
        ("cosine+infonce", cos.with_info_nce(0.1, 0.05)),
        (
            "cosine+infonce+hints",
            cos.with_info_nce(0.1, 0.05).with_hints(1.0),
        ),
    ]
}

/// The sentence sets of one run: training, validation (model selection) and held-back
/// evaluation (reported only), disjoint.
struct Split {
    train: Vec<String>,
    val: Vec<String>,
    held: Vec<String>,
    source: &'static str,
    /// Lines of `--train-file` used (after dropping evaluation and validation sentences).
    extra_train: usize,
}

/// Splits the shipped sentences: every `HELD_EVERY`-th is held back (or `--eval-file`'s
/// lines are), every `VAL_EVERY`-th of the rest is validation, the remainder trains, plus
/// `--train-file`'s lines that are neither held back nor validation.
fn split(ctx: &Ctx) -> Result<Split> {
    let all = lines(SENTENCES);
    let (held, source): (Vec<String>, _) = match &ctx.models.eval_file {
        Some(f) => (read_lines(f)?, "eval-file"),
        None => (
            all.iter()
                .enumerate()
                .filter(|(i, _)| i % HELD_EVERY == HELD_EVERY - 1)
                .map(|(_, s)| (*s).to_string())
                .collect(),
            "shipped sentences, every 5th held back",
        ),
    };
    if held.len() < 3 {
        return Err(CliError::Usage(format!(
            "distill-minilm needs at least 3 evaluation sentences, got {}",
            held.len()
        )));
    }
    let rest = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % HELD_EVERY != HELD_EVERY - 1)
        .map(|(_, s)| (*s).to_string());
    let (mut val, mut train) = (Vec::new(), Vec::new());
    for (j, s) in rest.enumerate() {
        if j % VAL_EVERY == VAL_EVERY - 1 {
            val.push(s);
        } else {
            train.push(s);
        }
    }
    let mut extra_train = 0;
    if let Some(f) = &ctx.models.train_file {
        let taken: std::collections::HashSet<String> =
            held.iter().chain(&val).chain(&train).cloned().collect();
        let extra: Vec<String> = read_lines(f)?
            .into_iter()
            .filter(|s| !taken.contains(s))
            .collect();
        extra_train = extra.len();
        train.extend(extra);
    }
    Ok(Split {
        train,
        val,
        held,
        source,
        extra_train,
    })
}

/// The non-empty lines of a sentence file.
fn read_lines(f: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(f).map_err(|e| compress_checkpoint::CheckpointError::io(f, e))?;
    Ok(lines(&text).into_iter().map(str::to_string).collect())
}

/// Teacher and student speed on a `[32, 128]` batch on one thread: median wall times in
/// ms and the median over the pairs of the ratio teacher / student.
#[derive(Debug, Clone, Copy)]
struct Speed {
    teacher_ms: f64,
    student_ms: f64,
    speedup: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `reps` eval forwards of the teacher and of the student, interleaved pair by pair
/// (teacher first in even pairs, student first in odd ones), after one untimed forward of
/// each: a change of load on a shared machine then hits both alike, and each pair's ratio
/// compares forwards run seconds apart instead of minutes (the teacher used to be timed
/// once before all students). The speed-up is the median of the pairs' ratios.
fn time_pair(
    teacher: &mut BertModel<f32>,
    student: &mut BertModel<f32>,
    reps: usize,
) -> Result<Speed> {
    let (b, s) = SPEED_SHAPE;
    let vocab = teacher.config.vocab_size;
    let ids = Array2::from_shape_fn((b, s), |(i, j)| (i * 131 + j * 17 + 1000) % vocab);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| CliError::Usage(format!("thread pool: {e}")))?;
    pool.install(|| {
        let time = |m: &mut BertModel<f32>| -> Result<f64> {
            let start = Instant::now();
            m.forward(&ids, None, Mode::Eval)?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        };
        time(teacher)?;
        time(student)?;
        let (mut tt, mut ts, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..reps.max(1) {
            let (t, s) = if i % 2 == 0 {
                let t = time(teacher)?;
                (t, time(student)?)
            } else {
                let s = time(student)?;
                (time(teacher)?, s)
            };
            tt.push(t);
            ts.push(s);
            ratios.push(t / s);
        }
        Ok(Speed {
            teacher_ms: median(tt),
            student_ms: median(ts),
            speedup: median(ratios),
        })
    })
}

/// Embeds `texts` with `model` as a sentence encoder (the teacher's tokenizer and pooling).
fn embed(
    tokenizer: &BertTokenizer,
    model: BertModel<f32>,
    pooling: PoolingKind,
    normalize: bool,
    texts: &[&str],
) -> Result<(Array2<f32>, BertModel<f32>)> {
    let mut enc = SentenceEncoder {
        tokenizer: tokenizer.clone(),
        model,
        pooling,
        normalize,
        batch_size: 32,
    };
    let e = enc.embed(texts)?;
    Ok((e, enc.model))
}

fn bar(visible: bool, label: &str, steps: usize) -> ProgressBar {
    let bar = if visible {
        ProgressBar::new(steps as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>26} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Settings shared by every training run.
fn train_config(
    ctx: &Ctx,
    objective: EmbeddingObjective,
    keep: &[usize],
    n_train: usize,
) -> SequenceDistillConfig {
    let full = (EXAMPLE_BUDGET / n_train.max(1)).clamp(1, 12);
    SequenceDistillConfig {
        objective,
        hint_layers: keep.iter().enumerate().map(|(s, &t)| (s, t)).collect(),
        epochs: ctx.epochs(full, full.min(2)),
        batch_size: 16,
        lr: 1e-4,
        weight_decay: 0.01,
        warmup: 0.1,
        seed: ctx.seed,
        ..SequenceDistillConfig::default()
    }
}

/// Trains a student from the teacher's layers `keep` with `objective`.
fn distil(
    ctx: &Ctx,
    teacher: &mut PooledBert<f32>,
    train: &[Vec<usize>],
    keep: &[usize],
    label: &str,
    objective: EmbeddingObjective,
) -> Result<(BertModel<f32>, FitReport)> {
    let cfg = train_config(ctx, objective, keep, train.len());
    let mut student = PooledBert::new(truncated_student(&teacher.model, keep)?, teacher.pooling);
    let widths: Vec<usize> = if objective.hint > 0.0 {
        (0..keep.len()).map(|l| student.width(l)).collect()
    } else {
        Vec::new()
    };
    let mut d = SequenceDistiller::new(teacher, train.to_vec(), &widths, cfg)?;
    let steps = train.len().div_ceil(d.config().batch_size) * d.config().epochs;
    let pb = bar(ctx.progress, label, steps);
    let report = d.fit(&mut student, &mut |s| {
        pb.set_position(s.step as u64 + 1);
        pb.set_message(format!(
            "loss {:.4} lr {:.1e} {:.1} ex/s",
            s.loss.total, s.lr, s.examples_per_sec
        ));
    })?;
    pb.finish_and_clear();
    Ok((student.model, report))
}

fn row(
    layers: usize,
    objective: &str,
    f: &Fidelity,
    speedup: f64,
    fit: Option<&FitReport>,
    epochs: usize,
) -> Row {
    Row {
        layers,
        objective: objective.to_string(),
        mean_cosine: f.mean_cosine,
        min_cosine: f.min_cosine,
        top1_agreement: f.top1_agreement,
        spearman: f.spearman,
        speedup,
        train_seconds: fit.map_or(0.0, |r| r.seconds),
        examples_per_sec: fit.map_or(0.0, |r| r.examples_per_sec),
        epochs: if fit.is_some() { epochs } else { 0 },
    }
}

fn save(
    ctx: &Ctx,
    model: &BertModel<f32>,
    teacher_dir: &Path,
    name: &str,
) -> Result<Option<String>> {
    let Some(root) = &ctx.models.save else {
        return Ok(None);
    };
    let dir = root.join(name);
    model.save_dir(&dir)?;
    compress_transformer::io::copy_tokenizer_files(teacher_dir, &dir)?;
    Ok(Some(dir.display().to_string()))
}

/// Runs `distill-minilm`.
pub(crate) fn run(ctx: &Ctx) -> Result<Report> {
    let dir = ctx.models.model.clone().ok_or_else(|| {
        CliError::Usage(
            "distill-minilm needs --model DIR (all-MiniLM-L6-v2, fetched by scripts/fetch-minilm.sh)"
                .into(),
        )
    })?;
    let data = split(ctx)?;
    let held: Vec<&str> = data.held.iter().map(String::as_str).collect();
    let val: Vec<&str> = data.val.iter().map(String::as_str).collect();
    let SentenceEncoder {
        tokenizer,
        model,
        pooling,
        normalize,
        ..
    } = SentenceEncoder::from_dir(&dir)?;
    let train_refs: Vec<&str> = data.train.iter().map(String::as_str).collect();
    let train_ids = tokenizer.encode(&train_refs)?;
    let n_layers = model.config.num_hidden_layers;
    let t0 = Instant::now();
    let (t_held, model) = embed(&tokenizer, model, pooling, normalize, &held)?;
    let teacher_embed_ms = t0.elapsed().as_secs_f64() * 1e3 / held.len() as f64;
    let (t_val, model) = embed(&tokenizer, model, pooling, normalize, &val)?;
    let mut teacher = PooledBert::new(model, pooling);
    let reps = if ctx.fast { 3 } else { 7 };
    // Every timed teacher forward (interleaved with the students'), for the teacher's time.
    let mut teacher_times = Vec::new();
    let baseline = metrics(&teacher.model, 1.0)?;

    let mut rows = Vec::new();
    let mut students = Vec::new();
    let mut truncated = None;
    let mut best3: Option<(BertModel<f32>, Row)> = None;
    let mut saved = Vec::new();
    for k in [2usize, 3] {
        let keep = every_kth_layer(n_layers, k)?;
        let layers = keep.len();
        let mut plain = truncated_student(&teacher.model, &keep)?;
        let speed = time_pair(&mut teacher.model, &mut plain, reps)?;
        teacher_times.push(speed.teacher_ms);
        let speedup = speed.speedup;
        let (s_held, _) = embed(&tokenizer, plain, pooling, normalize, &held)?;
        let f = fidelity(&t_held.view(), &s_held.view())?;
        let r = row(layers, "truncated", &f, speedup, None, 0);
        if k == 2 {
            truncated = Some(r.clone());
        }
        rows.push(r);
        let objs = objectives();
        let chosen: Vec<_> = if k == 2 {
            objs
        } else {
            objs.into_iter().skip(3).collect()
        };
        // The objective kept (saved, composed with int8) is chosen on validation sentences.
        let mut best: Option<(BertModel<f32>, Row, f64)> = None;
        for (name, objective) in chosen {
            let label = format!("L{layers} {name}");
            let (model, fit) = distil(ctx, &mut teacher, &train_ids, &keep, &label, objective)?;
            let (s_held, model) = embed(&tokenizer, model, pooling, normalize, &held)?;
            let f = fidelity(&t_held.view(), &s_held.view())?;
            let (s_val, model) = embed(&tokenizer, model, pooling, normalize, &val)?;
            let val_cos = fidelity(&t_val.view(), &s_val.view())?.mean_cosine;
            let epochs = train_config(ctx, objective, &keep, train_ids.len()).epochs;
            let r = row(layers, name, &f, speedup, Some(&fit), epochs);
            rows.push(r.clone());
            if best.as_ref().is_none_or(|(_, _, b)| val_cos > *b) {
                best = Some((model, r, val_cos));
            }
        }
        if let Some((model, r, _)) = best {
            if let Some(p) = save(ctx, &model, &dir, &format!("minilm-l{layers}-distilled"))? {
                saved.push(p);
            }
            students.push(r.clone());
            if k == 2 {
                best3 = Some((model, r));
            }
        }
    }
    let (best_model, best_row) =
        best3.ok_or_else(|| CliError::Usage("no 3-layer student".into()))?;
    let compressed = metrics(&best_model, best_row.mean_cosine)?;
    let (int8, speed) = int8_row(
        &tokenizer,
        best_model,
        (pooling, normalize),
        (&held, &t_held),
        &mut teacher.model,
        reps,
    )?;
    teacher_times.push(speed.teacher_ms);
    let teacher_ms = median(teacher_times);
    print_rows(&rows, teacher_ms);
    let students_json: Vec<_> = students
        .iter()
        .map(|r| {
            json!({"layers": r.layers, "objective": r.objective, "mean_cosine": r.mean_cosine,
            "top1_agreement": r.top1_agreement, "spearman": r.spearman, "speedup": r.speedup,
            "train_seconds": r.train_seconds, "examples_per_sec": r.examples_per_sec})
        })
        .collect();
    let extra = json!({
        "teacher": {"dir": dir.display().to_string(), "layers": n_layers,
            "ms_b32s128_1thread": teacher_ms, "ms_per_held_sentence": teacher_embed_ms},
        "data": {"train_sentences": train_ids.len(), "train_file_sentences": data.extra_train,
            "validation_sentences": val.len(), "held_sentences": held.len(), "source": data.source,
            "selection": "the saved / int8 student is the objective with the best validation cosine"},
        "speed": format!("teacher / student wall time of one eval forward of a [32, 128] batch on one thread: median over {reps} pairs of forwards timed back to back (order alternating), per student"),
        "students": students_json,
        "truncated": truncated.map(|r| json!({"layers": r.layers, "mean_cosine": r.mean_cosine,
            "top1_agreement": r.top1_agreement, "spearman": r.spearman, "speedup": r.speedup})),
        "ablation": rows,
        "int8": int8,
        "saved": saved,
    });
    Ok(Report {
        experiment: "distill-minilm".into(),
        data: "sentences".into(),
        seed: ctx.seed,
        baseline,
        compressed,
        control: None,
        extra,
    })
}

/// The distilled 3-layer student composed with W8A8 dynamic int8: every encoder `Linear`
/// swapped for compress-quant's `DynamicQLinear`, then fidelity to the teacher on the
/// held-back sentences and the speed-up, measured as for the float students.
fn int8_row(
    tokenizer: &BertTokenizer,
    model: BertModel<f32>,
    (pooling, normalize): (PoolingKind, bool),
    (held, t_held): (&[&str], &Array2<f32>),
    teacher: &mut BertModel<f32>,
    reps: usize,
) -> Result<(serde_json::Value, Speed)> {
    let mut model = model;
    let layers = model.config.num_hidden_layers;
    let swapped = compress_quant::quantize_dynamic(&mut model, |p| p.starts_with("encoder."))?;
    let speed = time_pair(teacher, &mut model, reps)?;
    let (s_held, _) = embed(tokenizer, model, pooling, normalize, held)?;
    let f = fidelity(&t_held.view(), &s_held.view())?;
    println!(
        "L{layers} distilled + int8 (W8A8 dynamic, {} linears): cos {:.4}, top-1 {:.3}, speedup {:.2}x",
        swapped.len(),
        f.mean_cosine,
        f.top1_agreement,
        speed.speedup
    );
    Ok((
        json!({"layers": layers, "objective": "best distilled, then W8A8 dynamic int8",
        "int8_linears": swapped.len(), "mean_cosine": f.mean_cosine, "min_cosine": f.min_cosine,
        "top1_agreement": f.top1_agreement, "spearman": f.spearman, "speedup": speed.speedup,
        "ms_b32s128_1thread": speed.student_ms}),
        speed,
    ))
}

/// Size and cost of a model per 128-token sentence; `accuracy` carries the mean cosine to
/// the teacher on held-back sentences (1 for the teacher itself).
fn metrics(model: &BertModel<f32>, accuracy: f64) -> Result<Metrics> {
    let stats = ModelStats::of(model);
    Ok(Metrics {
        accuracy,
        params: stats.params,
        nonzero: stats.nonzero,
        bytes: stats.bytes(Precision::F32),
        macs: model.cost(&[SPEED_SHAPE.1])?.macs,
    })
}

fn print_rows(rows: &[Row], teacher_ms: f64) {
    println!("teacher: {teacher_ms:.1} ms per [32, 128] batch on one thread");
    println!(
        "{:>6} {:<22} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "layers", "objective", "cos", "min cos", "top-1", "spearman", "speedup", "train s", "ex/s"
    );
    for r in rows {
        println!(
            "{:>6} {:<22} {:>8.4} {:>8.4} {:>8.3} {:>8.4} {:>7.2}x {:>9.1} {:>8.1}",
            r.layers,
            r.objective,
            r.mean_cosine,
            r.min_cosine,
            r.top1_agreement,
            r.spearman,
            r.speedup,
            r.train_seconds,
            r.examples_per_sec
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::{DataSource, ModelOpts};
    use std::collections::HashSet;

    fn ctx(train_file: Option<std::path::PathBuf>) -> Ctx {
        Ctx {
            data: DataSource::Digits,
            seed: 0,
            fast: true,
            progress: false,
            models: ModelOpts {
                train_file,
                ..ModelOpts::default()
            },
        }
    }

    #[test]
    fn split_sets_are_disjoint_and_cover_the_shipped_sentences() {
        let s = split(&ctx(None)).unwrap();
        let (t, v, h): (HashSet<_>, HashSet<_>, HashSet<_>) = (
            s.train.iter().collect(),
            s.val.iter().collect(),
            s.held.iter().collect(),
        );
        assert!(t.is_disjoint(&v) && t.is_disjoint(&h) && v.is_disjoint(&h));
        assert_eq!((s.train.len(), s.val.len(), s.held.len()), (200, 40, 60));
        assert_eq!(s.extra_train, 0);
    }

    #[test]
    fn train_file_adds_only_sentences_outside_validation_and_evaluation() {
        let base = split(&ctx(None)).unwrap();
        let dir = std::env::temp_dir().join(format!("nc-train-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("train.txt");
        let lines = [
            "A new sentence for training.",
            base.held[0].as_str(),
            base.val[0].as_str(),
            "Another new one.",
        ];
        std::fs::write(&f, lines.join("\n")).unwrap();
        let s = split(&ctx(Some(f))).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(s.extra_train, 2);
        assert_eq!(s.train.len(), base.train.len() + 2);
        assert!(!s.train.contains(&base.held[0]) && !s.train.contains(&base.val[0]));
        assert_eq!((s.val, s.held), (base.val, base.held));
    }
}
