//! Layer surgery on a user's model: paths, replacement, fixed slots, coupling widths, and
//! technique errors that keep their type through a visitor.

use compress_core::surgery::{
    find_layer, layer_paths, replace_layer, walk_layers_mut, with_layer_mut, with_param_mut,
};
use compress_core::{
    CoreError, Cost, Coupled, CouplingGroup, CouplingRole, Layer, LayerSlot, Mode, Module, Param,
    ParamPath, ParamVisitor, ParamVisitorMut, Result, Walk,
};
use ndarray::{ArrayD, ArrayRef, IxDyn};

/// Multiplies by a scalar parameter `scale` of shape `[n]` (per feature).
#[derive(Debug)]
struct Scale {
    scale: Param<f64>,
}

impl Scale {
    fn new(n: usize, v: f64) -> Self {
        Self {
            scale: Param::new(ArrayD::from_elem(vec![n], v)),
        }
    }
}

impl Module<f64> for Scale {
    fn visit(&self, p: &mut ParamPath, v: &mut dyn ParamVisitor<f64>) {
        p.scoped("scale", |p| v.visit(p, &self.scale));
    }
    fn visit_mut(&mut self, p: &mut ParamPath, v: &mut dyn ParamVisitorMut<f64>) -> Result<()> {
        p.scoped("scale", |p| v.visit_mut(p, &mut self.scale))
    }
}

impl Layer<f64> for Scale {
    fn name(&self) -> &'static str {
        "Scale"
    }
    fn forward(&mut self, x: &ArrayRef<f64, IxDyn>, _: Mode) -> Result<ArrayD<f64>> {
        Ok(x.to_owned() * &*self.scale.effective())
    }
    fn backward(&mut self, g: &ArrayRef<f64, IxDyn>) -> Result<ArrayD<f64>> {
        Ok(g.to_owned() * &*self.scale.effective())
    }
    fn cost(&self, s: &[usize]) -> Result<Cost> {
        Ok(Cost::passthrough(s))
    }
}

/// `y = b(a(x)) + x`: a replaceable child, a fixed child, a residual.
#[derive(Debug)]
struct Residual {
    a: Box<dyn Layer<f64>>,
    b: Scale,
}

impl Module<f64> for Residual {
    fn visit(&self, p: &mut ParamPath, v: &mut dyn ParamVisitor<f64>) {
        p.scoped("a", |p| self.a.visit(p, v));
        p.scoped("b", |p| self.b.visit(p, v));
    }
    fn visit_mut(&mut self, p: &mut ParamPath, v: &mut dyn ParamVisitorMut<f64>) -> Result<()> {
        p.scoped("a", |p| self.a.visit_mut(p, v))?;
        p.scoped("b", |p| self.b.visit_mut(p, v))
    }
}

impl Layer<f64> for Residual {
    fn name(&self) -> &'static str {
        "Residual"
    }
    fn forward(&mut self, x: &ArrayRef<f64, IxDyn>, m: Mode) -> Result<ArrayD<f64>> {
        let h = self.a.forward(x, m)?;
        Ok(self.b.forward(&h, m)? + x)
    }
    fn backward(&mut self, g: &ArrayRef<f64, IxDyn>) -> Result<ArrayD<f64>> {
        let gb = self.b.backward(g)?;
        Ok(self.a.backward(&gb)? + g)
    }
    fn cost(&self, s: &[usize]) -> Result<Cost> {
        Ok(Cost::passthrough(s))
    }
    fn children(&self) -> Vec<(String, &dyn Layer<f64>)> {
        vec![("a".into(), self.a.as_ref()), ("b".into(), &self.b)]
    }
    fn children_mut(&mut self) -> Vec<(String, LayerSlot<'_, f64>)> {
        vec![
            ("a".into(), LayerSlot::Boxed(&mut self.a)),
            ("b".into(), LayerSlot::Fixed(&mut self.b)),
        ]
    }
    fn coupling_groups(&self, _: &[usize]) -> Result<Vec<CouplingGroup>> {
        Ok(vec![
            CouplingGroup::new("stream")
                .with(Coupled::new("a.scale", 0, CouplingRole::Produce))
                .with(Coupled::new("b.scale", 0, CouplingRole::Produce)),
        ])
    }
}

fn nested() -> Residual {
    Residual {
        a: Box::new(Residual {
            a: Box::new(Scale::new(3, 2.0)),
            b: Scale::new(3, 1.0),
        }),
        b: Scale::new(3, 0.5),
    }
}

#[test]
fn paths_are_preorder_and_match_parameter_paths() {
    let net = nested();
    let paths = layer_paths(&net);
    let names: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["a", "a.a", "a.b", "b"]);
    assert_eq!(paths[1].1, "Scale");
    let params: Vec<String> = net.named_params().into_iter().map(|p| p.path).collect();
    assert_eq!(params, ["a.a.scale", "a.b.scale", "b.scale"]);
    assert_eq!(find_layer(&net, "a.b").map(Layer::name), Some("Scale"));
    assert_eq!(find_layer(&net, "").map(Layer::name), Some("Residual"));
    assert!(find_layer(&net, "a.c").is_none());
}

#[test]
fn replacing_a_nested_boxed_layer_changes_the_output() {
    let mut net = nested();
    let x = ArrayD::from_elem(vec![1, 3], 1.0);
    // a.a: 2x, a.b: 1x, +x -> 3; b: 0.5x -> 1.5, +x -> 2.5
    assert_eq!(net.forward(&x, Mode::Eval).unwrap()[[0, 0]], 2.5);
    let old = replace_layer(&mut net, "a.a", Box::new(Scale::new(3, 4.0))).unwrap();
    assert_eq!(old.name(), "Scale");
    // a: 4 + 1 = 5; 0.5 * 5 + 1 = 3.5
    assert_eq!(net.forward(&x, Mode::Eval).unwrap()[[0, 0]], 3.5);
}

#[test]
fn fixed_slots_refuse_replacement_but_allow_changes_in_place() {
    let mut net = nested();
    let err = replace_layer(&mut net, "b", Box::new(Scale::new(3, 1.0))).unwrap_err();
    assert!(matches!(err, CoreError::InvalidState { ref layer, .. } if layer == "Scale"));
    with_layer_mut(&mut net, "b", |slot| {
        slot.downcast_mut::<Scale>()
            .unwrap()
            .scale
            .value_mut()
            .fill(3.0);
        Ok(())
    })
    .unwrap();
    assert_eq!(net.b.scale.value()[0], 3.0);
    let err = with_layer_mut(&mut net, "a.z", |_| Ok(())).unwrap_err();
    assert!(matches!(err, CoreError::MissingParam { ref path } if path == "a.z"));
}

#[test]
fn walk_mut_wraps_and_skips_the_new_layer() {
    let mut net = nested();
    let mut seen = Vec::new();
    walk_layers_mut(
        &mut net,
        &mut |p: &ParamPath, slot: &mut LayerSlot<'_, f64>| {
            seen.push(p.to_string());
            if slot.is_replaceable() && slot.layer().name() == "Scale" {
                slot.map(|inner| {
                    Box::new(Residual {
                        a: inner,
                        b: Scale::new(3, 1.0),
                    })
                })?;
                return Ok(Walk::Skip);
            }
            Ok(Walk::Descend)
        },
    )
    .unwrap();
    assert_eq!(seen, ["a", "a.a", "a.b", "b"]);
    let names: Vec<String> = layer_paths(&net).into_iter().map(|(p, _)| p).collect();
    assert_eq!(names, ["a", "a.a", "a.a.a", "a.a.b", "a.b", "b"]);
}

#[test]
fn coupling_width_checks_members() {
    let net = Residual {
        a: Box::new(Scale::new(3, 2.0)),
        b: Scale::new(3, 1.0),
    };
    let groups = net.coupling_groups(&[3]).unwrap();
    assert_eq!(groups[0].width(&net).unwrap(), 3);
    let bad =
        CouplingGroup::new("g").with(Coupled::new("b.scale", 0, CouplingRole::Produce).block(2));
    assert!(matches!(
        bad.width(&net),
        Err(CoreError::InvalidConfig { .. })
    ));
    let missing = CouplingGroup::new("g").with(Coupled::new("nope", 0, CouplingRole::Consume));
    assert!(matches!(
        missing.width(&net),
        Err(CoreError::MissingParam { .. })
    ));
    let prefixed = groups[0].clone().prefixed("enc");
    assert_eq!(prefixed.members[0].path, "enc.a.scale");
    assert_eq!(prefixed.name, "enc.stream");
}

/// A technique's own error type.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("bad width {width}")]
struct TechniqueError {
    width: usize,
}

#[test]
fn technique_errors_keep_their_type_through_a_visitor() {
    let mut net = nested();
    let err = net
        .visit_mut(
            &mut ParamPath::root(),
            &mut |p: &ParamPath, param: &mut Param<f64>| {
                Err(CoreError::technique(
                    p.to_string(),
                    TechniqueError { width: param.len() },
                ))
            },
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "at `a.a.scale`: bad width 3");
    assert_eq!(
        err.technique_error::<TechniqueError>(),
        Some(&TechniqueError { width: 3 })
    );
    assert!(err.technique_error::<std::fmt::Error>().is_none());
    assert_eq!(
        err.into_technique::<TechniqueError>().unwrap(),
        TechniqueError { width: 3 }
    );
    // A core error is not wrapped twice.
    let core = CoreError::technique("x", CoreError::config("k", "v"));
    assert!(matches!(core, CoreError::InvalidConfig { .. }));
}

#[test]
fn with_param_mut_reaches_by_path() {
    let mut net = nested();
    with_param_mut(&mut net, "a.b.scale", |p| {
        p.value_mut().fill(7.0);
        Ok(())
    })
    .unwrap();
    assert_eq!(net.named_params()[1].nonzero, 3);
    let got: f64 = with_param_mut(&mut net, "a.b.scale", |p| Ok(p.value()[0])).unwrap();
    assert_eq!(got, 7.0);
    assert!(with_param_mut(&mut net, "zz", |_| Ok(())).is_err());
}
