//! A model written by a user (not a `Sequential`, with a residual connection) goes through
//! prune -> shrink -> quantize -> save -> load and gives the same outputs after loading.

use ndarray::{ArrayD, ArrayRef, IxDyn};
use netcompress::checkpoint::QuantizedModelFile;
use netcompress::core::surgery::layer_paths;
use netcompress::core::{
    Cost, Coupled, CouplingGroup, CouplingRole, Layer, LayerSlot, Mode, Module, ParamPath,
    ParamVisitor, ParamVisitorMut, Result,
};
use netcompress::nn::{Linear, ReLU};
use netcompress::prune::{PruneConfig, ShrinkConfig, prune, prune_coupled};
use netcompress::quant::{
    ActQuant, IntScheme, PtqConfig, QuantizedModel, quantize_layers, quantize_model,
};
use rand::{SeedableRng, rngs::StdRng};

/// `head(relu(h + up(relu(down(h)))))` with `h = embed(x)`.
#[derive(Debug)]
struct UserNet {
    embed: Box<dyn Layer<f32>>,
    down: Box<dyn Layer<f32>>,
    act: ReLU<f32>,
    up: Box<dyn Layer<f32>>,
    out_act: ReLU<f32>,
    head: Box<dyn Layer<f32>>,
}

impl UserNet {
    fn new(input: usize, width: usize, hidden: usize, classes: usize, seed: u64) -> Self {
        let rng = &mut StdRng::seed_from_u64(seed);
        Self {
            embed: Box::new(Linear::new(input, width, true, rng)),
            down: Box::new(Linear::new(width, hidden, true, rng)),
            act: ReLU::new(),
            up: Box::new(Linear::new(hidden, width, true, rng)),
            out_act: ReLU::new(),
            head: Box::new(Linear::new(width, classes, true, rng)),
        }
    }
}

impl Module<f32> for UserNet {
    fn visit(&self, p: &mut ParamPath, v: &mut dyn ParamVisitor<f32>) {
        p.scoped("embed", |p| self.embed.visit(p, v));
        p.scoped("down", |p| self.down.visit(p, v));
        p.scoped("up", |p| self.up.visit(p, v));
        p.scoped("head", |p| self.head.visit(p, v));
    }
    fn visit_mut(&mut self, p: &mut ParamPath, v: &mut dyn ParamVisitorMut<f32>) -> Result<()> {
        p.scoped("embed", |p| self.embed.visit_mut(p, v))?;
        p.scoped("down", |p| self.down.visit_mut(p, v))?;
        p.scoped("up", |p| self.up.visit_mut(p, v))?;
        p.scoped("head", |p| self.head.visit_mut(p, v))
    }
}

impl Layer<f32> for UserNet {
    fn name(&self) -> &'static str {
        "UserNet"
    }
    fn forward(&mut self, x: &ArrayRef<f32, IxDyn>, m: Mode) -> Result<ArrayD<f32>> {
        let h = self.embed.forward(x, m)?;
        let r = self.down.forward(&h, m)?;
        let r = self.act.forward(&r, m)?;
        let r = self.up.forward(&r, m)?;
        let s = self.out_act.forward(&(h + r), m)?;
        self.head.forward(&s, m)
    }
    fn backward(&mut self, g: &ArrayRef<f32, IxDyn>) -> Result<ArrayD<f32>> {
        let g = self.head.backward(g)?;
        let g = self.out_act.backward(&g)?;
        let gr = self.up.backward(&g)?;
        let gr = self.act.backward(&gr)?;
        let gr = self.down.backward(&gr)?;
        self.embed.backward(&(g + gr))
    }
    fn cost(&self, s: &[usize]) -> Result<Cost> {
        let e = self.embed.cost(s)?;
        let d = self.down.cost(&e.output_shape)?;
        let u = self.up.cost(&d.output_shape)?;
        let h = self.head.cost(&u.output_shape)?;
        Ok(Cost::passthrough(s).then(e).then(d).then(u).then(h))
    }
    fn children(&self) -> Vec<(String, &dyn Layer<f32>)> {
        vec![
            ("embed".into(), self.embed.as_ref()),
            ("down".into(), self.down.as_ref()),
            ("act".into(), &self.act),
            ("up".into(), self.up.as_ref()),
            ("out_act".into(), &self.out_act),
            ("head".into(), self.head.as_ref()),
        ]
    }
    fn children_mut(&mut self) -> Vec<(String, LayerSlot<'_, f32>)> {
        vec![
            ("embed".into(), LayerSlot::Boxed(&mut self.embed)),
            ("down".into(), LayerSlot::Boxed(&mut self.down)),
            ("act".into(), LayerSlot::Fixed(&mut self.act)),
            ("up".into(), LayerSlot::Boxed(&mut self.up)),
            ("out_act".into(), LayerSlot::Fixed(&mut self.out_act)),
            ("head".into(), LayerSlot::Boxed(&mut self.head)),
        ]
    }
    fn coupling_groups(&self, _: &[usize]) -> Result<Vec<CouplingGroup>> {
        use CouplingRole::{Consume, Follow, Produce};
        Ok(vec![
            CouplingGroup::new("hidden")
                .with(Coupled::new("down.weight", 0, Produce))
                .with(Coupled::new("down.bias", 0, Follow))
                .with(Coupled::new("up.weight", 1, Consume)),
            CouplingGroup::new("stream")
                .with(Coupled::new("embed.weight", 0, Produce))
                .with(Coupled::new("embed.bias", 0, Follow))
                .with(Coupled::new("up.weight", 0, Produce))
                .with(Coupled::new("up.bias", 0, Follow))
                .with(Coupled::new("down.weight", 1, Consume))
                .with(Coupled::new("head.weight", 1, Consume)),
        ])
    }
}

fn x() -> ArrayD<f32> {
    ArrayD::from_shape_fn(vec![7, 12], |ix| ((ix[0] * 12 + ix[1]) as f32 * 0.37).sin())
}

#[test]
fn user_model_prune_shrink_quantize_save_load_same_outputs() {
    let mut net = UserNet::new(12, 16, 32, 5, 1);
    // prune: masks on every weight.
    let pr = prune(&mut net, &PruneConfig::new(0.5)).unwrap();
    assert!((pr.sparsity() - 0.5).abs() < 0.01);
    // shrink: a quarter of the residual stream and of the hidden units, physically.
    let sr = prune_coupled(&mut net, &ShrinkConfig::new(0.25), &[12]).unwrap();
    assert_eq!((sr.groups[0].after, sr.groups[1].after), (24, 12));
    assert!(sr.macs_after < sr.macs_before);
    // quantize: int8 per-channel weights, applied to the model.
    let (q, report) = quantize_model(&net, &PtqConfig::new(IntScheme::int8_per_channel())).unwrap();
    assert_eq!(report.params.len(), 4);
    q.apply_to(&mut net).unwrap();
    let expected = net.forward(&x(), Mode::Eval).unwrap();
    // save -> load into a freshly built model of the shrunk shape (other weights).
    let dir = std::env::temp_dir().join(format!("netcompress-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("user.safetensors");
    q.save(&file).unwrap();
    let loaded = QuantizedModel::load(&file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let mut fresh = UserNet::new(12, 12, 24, 5, 99);
    assert_ne!(fresh.forward(&x(), Mode::Eval).unwrap(), expected);
    loaded.apply_to(&mut fresh).unwrap();
    assert_eq!(fresh.forward(&x(), Mode::Eval).unwrap(), expected);
    // and the loaded model runs on integer kernels, close to its float simulation.
    let swapped = quantize_layers(&mut fresh, ActQuant::DynamicPerRow, false, |_| true).unwrap();
    assert_eq!(swapped, ["embed", "down", "up", "head"]);
    let int8 = fresh.forward(&x(), Mode::Eval).unwrap();
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = int8
        .iter()
        .zip(&expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff < 0.05 * scale,
        "int8 vs simulated: {diff} (scale {scale})"
    );
    let names: Vec<&str> = layer_paths(&fresh).into_iter().map(|(_, n)| n).collect();
    assert_eq!(
        names,
        ["QLinear", "QLinear", "ReLU", "QLinear", "ReLU", "QLinear"]
    );
}
