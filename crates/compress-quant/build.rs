//! Detects whether the compiler has the AVX-VNNI / AVX-512 VNNI intrinsics (stable since
//! Rust 1.89) so the crate keeps building on its 1.88 MSRV without those kernels.

use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vnni_intrinsics)");
    println!("cargo::rerun-if-changed=build.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (...)"
    let minor = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    if minor.is_some_and(|m| m >= 89) {
        println!("cargo::rustc-cfg=vnni_intrinsics");
    }
}
