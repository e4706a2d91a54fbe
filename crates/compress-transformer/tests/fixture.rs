//! Our forward against the PyTorch/transformers reference on the tiny BERT fixture.

use crate::common::{Reference, fixture_dir, max_diff};
use compress_core::{Mode, Module};
use compress_nn::{PaddingMask, Pooling, PoolingKind};
use compress_transformer::{BertModel, SentenceEncoder};
use ndarray::{Array2, ArrayD};

fn mask_of(m: &Array2<usize>) -> PaddingMask {
    PaddingMask::new(&m.mapv(|v| v == 1))
}

#[test]
fn f32_hidden_states_and_pooled_match_reference() {
    let r = Reference::load();
    let mut model = BertModel::<f32>::from_dir(fixture_dir()).unwrap();
    assert!(model.pooler.is_some());
    let ids = r.ids("ids");
    let mask = mask_of(&r.ids("mask"));
    let h = model.forward(&ids, Some(&mask), Mode::Eval).unwrap();
    let h64: ArrayD<f64> = h.mapv(f64::from).into_dyn();
    let d = max_diff(&h64, &r.f64("hidden.2"));
    assert!(d < 1e-5, "last hidden state differs by {d}");
    let mut pool = Pooling::<f32>::new(PoolingKind::Mean, true);
    pool.set_padding_mask(Some(mask));
    let p = pool.pool(&h.view()).unwrap().mapv(f64::from).into_dyn();
    let d = max_diff(&p, &r.f64("pooled"));
    assert!(d < 1e-5, "pooled embedding differs by {d}");
}

#[test]
fn f64_every_layer_matches_reference() {
    let r = Reference::load();
    let mut model = BertModel::<f64>::from_dir(fixture_dir()).unwrap();
    let ids = r.ids("ids");
    let mask = mask_of(&r.ids("mask"));
    let e = model
        .embeddings
        .forward(&ids, None, Mode::Eval)
        .unwrap()
        .into_dyn();
    assert!(max_diff(&e, &r.f64("hidden.0")) < 1e-12);
    let h = model
        .forward(&ids, Some(&mask), Mode::Eval)
        .unwrap()
        .into_dyn();
    let d = max_diff(&h, &r.f64("hidden.2"));
    assert!(d < 1e-10, "f64 last hidden state differs by {d}");
    model.keep_layers(&[0]).unwrap();
    let h1 = model
        .forward(&ids, Some(&mask), Mode::Eval)
        .unwrap()
        .into_dyn();
    assert!(max_diff(&h1, &r.f64("hidden.1")) < 1e-10);
}

#[test]
fn sentence_encoder_matches_reference_texts() {
    let r = Reference::load();
    let texts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("texts.json")).unwrap())
            .unwrap();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut enc = SentenceEncoder::from_dir(fixture_dir()).unwrap();
    // Token ids equal the Python tokenizer's (before padding).
    let ids = enc.tokenizer.encode(&texts).unwrap();
    let want_ids = r.ids("text_ids");
    let want_mask = r.ids("text_mask");
    for (i, seq) in ids.iter().enumerate() {
        let n = want_mask.row(i).sum();
        let want: Vec<usize> = want_ids.row(i).iter().take(n).copied().collect();
        assert_eq!(seq, &want, "text {i}");
    }
    enc.batch_size = 2;
    let e = enc.embed(&texts).unwrap().mapv(f64::from).into_dyn();
    let d = max_diff(&e, &r.f64("text_pooled"));
    assert!(d < 1e-5, "text embeddings differ by {d}");
}

#[test]
fn state_dict_round_trips_with_the_file() {
    let model = BertModel::<f32>::from_dir(fixture_dir()).unwrap();
    let dir = std::env::temp_dir().join(format!("ct-roundtrip-{}", std::process::id()));
    model.save_dir(&dir).unwrap();
    let a = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    let b = std::fs::read(dir.join("model.safetensors")).unwrap();
    let (sa, sb) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    let mut na = sa.names();
    let mut nb = sb.names();
    na.sort();
    nb.sort();
    assert_eq!(na, nb);
    for n in na {
        assert_eq!(
            sa.tensor(n).unwrap().data(),
            sb.tensor(n).unwrap().data(),
            "{n}"
        );
        assert_eq!(
            sa.tensor(n).unwrap().shape(),
            sb.tensor(n).unwrap().shape(),
            "{n}"
        );
    }
    let again = BertModel::<f32>::from_dir(&dir).unwrap();
    assert_eq!(again.state_dict(), model.state_dict());
    assert_eq!(
        again.config,
        BertModel::<f32>::from_dir(&dir).unwrap().config
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_linear_is_reachable_by_its_checkpoint_path() {
    use compress_core::surgery::layer_paths;
    let model = BertModel::<f32>::from_dir(fixture_dir()).unwrap();
    let params: Vec<String> = model.named_params().into_iter().map(|p| p.path).collect();
    let linears: Vec<String> = layer_paths(&model)
        .into_iter()
        .filter(|(_, name)| *name == "Linear")
        .map(|(p, _)| p)
        .collect();
    // 6 per layer, 2 layers, and the pooler.
    assert_eq!(linears.len(), 13, "{linears:?}");
    assert!(linears.contains(&"encoder.layer.1.attention.self.value".to_string()));
    for l in &linears {
        assert!(params.contains(&format!("{l}.weight")), "{l}");
    }
}
