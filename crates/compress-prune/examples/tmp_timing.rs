//! temporary timing harness
fn main() {
    use std::time::Instant;
    let n = 16_777_216usize;
    let mut s = 1u64;
    let mut u = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s >> 40) as f32 / (1u64<<24) as f32 };
    let w: Vec<f32> = (0..n).map(|_| ((0..4).map(|_| u()).sum::<f32>() - 2.0) * 0.087).collect();
    let mut mask = vec![0.0f32; n];
    for _ in 0..8 {
        let t = Instant::now();
        let th = compress_prune::magnitude_threshold(&w, 0.9).unwrap();
        let t1 = t.elapsed();
        let t = Instant::now();
        compress_prune::magnitude_mask_into(&w, 0.9, &mut mask).unwrap();
        let t2 = t.elapsed();
        let t = Instant::now();
        let mut h = vec![0u32; 65536];
        for &x in &w { h[(x.abs().to_bits() >> 15) as usize] += 1; }
        let t3 = t.elapsed();
        let t = Instant::now();
        let mut c = 0usize;
        for &x in &w { c += ((x as f64).abs().to_bits() >> 47 == 1000) as usize; }
        let t4 = t.elapsed();
        println!("threshold {t1:?} mask_into {t2:?} hist32 {t3:?} scan64 {t4:?} {} {} {}", th.pruned, h[5], c);
    }
}
