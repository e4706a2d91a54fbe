//! Which vector extensions the SIMD kernels of every crate may use.
//!
//! Kernels detect the CPU's features at run time. [`Isa::current`] is the widest level they
//! may run at: the CPU's own, capped by the environment variable `NETCOMPRESS_ISA`
//! (`avx512`, `avx2` or `portable`, read once per process). Forcing `avx2` on an AVX-512
//! machine measures what users without AVX-512 (AMD Zen 2/3, older Intel) get; forcing
//! `portable` runs the scalar twins.
//!
//! ```
//! use compress_core::Isa;
//!
//! let isa = Isa::current();
//! assert!(isa <= Isa::detected());
//! println!("kernels run on {}", isa.name());
//! ```

use std::sync::OnceLock;

/// A level of x86-64 vector support, ordered from narrowest to widest.
///
/// `Avx2` means AVX2 + FMA (x86-64-v3); `Avx512` means AVX-512F/BW/VL on top of it
/// (x86-64-v4). On other architectures only `Portable` exists for these kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// No x86 SIMD: the portable (scalar or compiler-vectorised baseline) kernels.
    Portable,
    /// AVX2 and FMA (256-bit vectors).
    Avx2,
    /// AVX-512 F, BW and VL (512-bit vectors).
    Avx512,
}

/// The name of the environment variable that caps the kernels' vector extension.
pub const ISA_ENV: &str = "NETCOMPRESS_ISA";

impl Isa {
    /// The widest level this CPU supports.
    pub fn detected() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                if has!("avx512f") && has!("avx512bw") && has!("avx512vl") {
                    return Self::Avx512;
                }
                return Self::Avx2;
            }
        }
        Self::Portable
    }

    /// Parses a value of `NETCOMPRESS_ISA` (case-insensitive: `avx512`, `avx2`,
    /// `portable`; `scalar` is accepted for `portable`).
    ///
    /// # Errors
    ///
    /// [`crate::CoreError::InvalidConfig`] naming the variable and the value otherwise.
    pub fn parse(value: &str) -> crate::Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "avx512" | "avx-512" => Ok(Self::Avx512),
            "avx2" => Ok(Self::Avx2),
            "portable" | "scalar" => Ok(Self::Portable),
            other => Err(crate::CoreError::InvalidConfig {
                name: ISA_ENV.into(),
                reason: format!("`{other}` is not one of avx512, avx2, portable"),
            }),
        }
    }

    /// The cap requested through `NETCOMPRESS_ISA`, if the variable is set.
    ///
    /// # Errors
    ///
    /// As [`Isa::parse`], when the variable holds an unknown value.
    pub fn requested() -> crate::Result<Option<Self>> {
        match std::env::var(ISA_ENV) {
            Ok(v) => Self::parse(&v).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The level kernels run at: [`Isa::detected`], capped by `NETCOMPRESS_ISA` (an
    /// unknown value is ignored here; [`Isa::requested`] reports it). Computed once.
    pub fn current() -> Self {
        static CURRENT: OnceLock<Isa> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let detected = Self::detected();
            match Self::requested() {
                Ok(Some(cap)) => detected.min(cap),
                _ => detected,
            }
        })
    }

    /// Whether kernels may use this level (it is at most [`Isa::current`]).
    pub fn enabled(self) -> bool {
        self <= Self::current()
    }

    /// Whether no cap is in force (`NETCOMPRESS_ISA` unset, or not below the CPU's level).
    /// Kernels use extensions outside this ladder (AVX-VNNI on 256-bit vectors) only then,
    /// so that `NETCOMPRESS_ISA=avx2` on any CPU runs what an x86-64-v3 CPU would.
    pub fn uncapped() -> bool {
        Self::current() == Self::detected()
    }

    /// A short lower-case name (`avx512`, `avx2`, `portable`), as `NETCOMPRESS_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }
}

/// A CPU extension outside the [`Isa`] ladder that some kernels use when present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CpuFeature {
    /// The `popcnt` instruction (binary XNOR kernels).
    Popcnt,
    /// AVX-512 VNNI (`vpdpbusd` on `zmm`, int8 GEMM).
    Avx512Vnni,
    /// AVX-VNNI (`vpdpbusd` on `ymm`, int8 GEMM without AVX-512).
    AvxVnni,
}

impl CpuFeature {
    /// Whether this CPU has the extension (and the [`Isa`] level it builds on). The one
    /// place, with [`Isa::detected`], where the crates ask the CPU what it has.
    pub fn detected(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            match self {
                Self::Popcnt => has!("popcnt"),
                Self::Avx512Vnni => Isa::detected() >= Isa::Avx512 && has!("avx512vnni"),
                Self::AvxVnni => Isa::detected() >= Isa::Avx2 && has!("avxvnni"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Isa;

    #[test]
    fn parse_accepts_the_documented_names_and_rejects_others() {
        assert_eq!(Isa::parse("AVX512").unwrap(), Isa::Avx512);
        assert_eq!(Isa::parse(" avx2 ").unwrap(), Isa::Avx2);
        assert_eq!(Isa::parse("scalar").unwrap(), Isa::Portable);
        let err = Isa::parse("sse9").unwrap_err().to_string();
        assert!(
            err.contains("NETCOMPRESS_ISA") && err.contains("sse9"),
            "{err}"
        );
    }

    #[test]
    fn current_never_exceeds_the_cpu() {
        assert!(Isa::current() <= Isa::detected());
        assert!(Isa::Portable.enabled());
        for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
            assert_eq!(Isa::parse(isa.name()).unwrap(), isa);
        }
    }
}
