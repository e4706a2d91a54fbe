//! Closed-form costs of a standard 3x3 convolution and each efficient block at one shape,
//! next to what the blocks' own `cost` counts (docs/guide/architecture.md).
//!
//! Run with `cargo run -p compress-arch --example block_costs`.

use compress_arch::blocks::{
    DepthwiseSeparableConv, Fire, FireConfig, GhostConfig, GhostModule, InvertedConfig,
    InvertedResidual, SeparableConfig, ShuffleConfig, ShuffleUnit, XceptionBlock, XceptionConfig,
};
use compress_arch::cost::{self, BlockCost};
use compress_core::{Layer, Result};
use rand::{SeedableRng, rngs::StdRng};

fn row(name: &str, f: &BlockCost, layer: &dyn Layer<f32>, input: &[usize]) -> Result<()> {
    let c = layer.cost(input)?;
    assert_eq!((f.params(), f.macs()), (c.params, c.macs), "{name}");
    println!(
        "{name:<24} {:>9} {:>9} {:>12} {:>12}",
        f.weights, c.params, f.weight_macs, c.macs
    );
    Ok(())
}

fn main() -> Result<()> {
    let rng = &mut StdRng::seed_from_u64(0);
    let (m, n, h) = (64, 64, 32);
    let input = [m, h, h];
    println!(
        "{:<24} {:>9} {:>9} {:>12} {:>12}",
        "64 -> 64 at 32x32", "weights", "params", "weight MACs", "MACs"
    );
    let std = cost::standard_conv(m, n, 3, 1, h, h, true);
    println!(
        "{:<24} {:>9} {:>9} {:>12} {:>12}",
        "standard 3x3 conv + BN",
        std.weights,
        std.params(),
        std.weight_macs,
        std.macs()
    );
    let cfg = SeparableConfig::new(m, n, 3);
    let f = cost::depthwise_separable(&cfg, h, h);
    row(
        "depthwise separable",
        &f,
        &DepthwiseSeparableConv::new(cfg, rng)?,
        &input,
    )?;
    println!(
        "  separable / standard weights = {:.4} = 1/N + 1/K^2 = {:.4}",
        f.weights as f64 / std.weights as f64,
        cost::separable_ratio(n, 3)
    );
    let cfg = InvertedConfig::new(m, n, 6);
    row(
        "inverted residual t=6",
        &cost::inverted_residual(&cfg, h, h),
        &InvertedResidual::new(cfg, rng)?,
        &input,
    )?;
    let cfg = ShuffleConfig::new(m, n, 4);
    row(
        "shuffle unit g=4",
        &cost::shuffle_unit(&cfg, h, h),
        &ShuffleUnit::new(cfg, rng)?,
        &input,
    )?;
    let cfg = FireConfig::new(m, 16, 32, 32);
    row(
        "fire s=16 e=32+32",
        &cost::fire(&cfg, h, h),
        &Fire::new(cfg, rng)?,
        &input,
    )?;
    let cfg = XceptionConfig::new(m, n, 2);
    row(
        "xception 2 reps",
        &cost::xception_block(&cfg, h, h),
        &XceptionBlock::new(cfg, rng)?,
        &input,
    )?;
    let cfg = GhostConfig::new(m, n).kernel(3);
    row(
        "ghost 3x3 s=2",
        &cost::ghost_module(&cfg, h, h),
        &GhostModule::new(cfg, rng)?,
        &input,
    )?;
    Ok(())
}
