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
        let t = Instant::now();
        let (lo, hi) = (4590468260436115456u64, 4590797624298176512u64);
        let mut below = 0usize; let mut cand: Vec<u64> = Vec::with_capacity(500_000);
        for &x in &w { let key = (x as f64).abs().to_bits(); below += usize::from(key < lo); if key >= lo && key <= hi { cand.push(key); } }
        let t5 = t.elapsed();
        let t = Instant::now();
        let mut below2 = 0usize; let mut cand2: Vec<u64> = Vec::with_capacity(500_000);
        let mut buf = [0u64; 1024]; let mut nb = 0usize;
        for &x in &w { let key = (x as f64).abs().to_bits(); below2 += usize::from(key < lo); buf[nb & 1023] = key; nb += usize::from(key.wrapping_sub(lo) <= hi - lo); if nb == 1024 { cand2.extend_from_slice(&buf); nb = 0; } }
        cand2.extend_from_slice(&buf[..nb]);
        let t6 = t.elapsed();
        println!("plain-pass {t5:?} {} {} branchless {t6:?} {} {}", below, cand.len(), below2, cand2.len());
        println!("threshold {t1:?} mask_into {t2:?} hist32 {t3:?} scan64 {t4:?} {} {} {}", th.pruned, h[5], c);
    }
}
