//! Concrete `f32` / `f64` instances of generic slice kernels, so that hot loops run at the
//! opt-level of the crate that defines them rather than the user's.
//!
//! Generic code is compiled in the crate that names the type: a user's crate, at the user's
//! opt-level. A debug build would then run every element-wise loop of a generic library
//! unoptimised (about 100x slower), even with `[profile.dev.package."*"] opt-level = 3`.
//! [`concrete!`](crate::concrete!) writes a loop once as a generic body and instantiates it
//! for `f32` and `f64` in non-generic `#[inline(never)]` functions of the defining crate;
//! the generic entry point only picks one through
//! [`Float::as_f32_slice`](crate::Float::as_f32_slice) /
//! [`Float::as_f64_slice`](crate::Float::as_f64_slice) (free), and runs the generic body for
//! any other type.

/// Declares a generic slice kernel `$name<F: Float>(outputs.., inputs.., scalars.., extras..)`
/// whose body runs through an `f32` or `f64` instance compiled in the crate that declares it
/// (see the [module documentation](mod@crate::concrete)). Sections are separated by `;`:
/// mutable slices (`name: mut`), read-only slices (`name: slice`), scalars of type `F`
/// (`name: scalar`) and, optionally, other arguments with their types (`name: usize`).
///
/// ```
/// compress_core::concrete! {
///     /// `y += a * x`.
///     pub fn axpy(y: mut; x: slice; a: scalar) {
///         for (y, &x) in y.iter_mut().zip(x) {
///             *y += a * x;
///         }
///     }
/// }
/// let mut y = vec![1.0f32, 2.0];
/// axpy(&mut y, &[10.0, 20.0], 0.5);
/// assert_eq!(y, [6.0, 12.0]);
/// ```
#[macro_export]
macro_rules! concrete {
    (
        $(#[$doc:meta])*
        $vis:vis fn $name:ident(
            $($m:ident: mut),* ; $($s:ident: slice),* ; $($c:ident: scalar),* $(; $($b:ident: $bt:ty),*)?
        ) $body:block
    ) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name<F: $crate::Float>(
            $($m: &mut [F],)* $($s: &[F],)* $($c: F,)* $($($b: $bt),*)?
        ) {
            #[allow(clippy::too_many_arguments)]
            #[inline(always)]
            fn body<F: $crate::Float>($($m: &mut [F],)* $($s: &[F],)* $($c: F,)* $($($b: $bt),*)?) $body
            #[allow(clippy::too_many_arguments)]
            #[inline(never)]
            fn f32s($($m: &mut [f32],)* $($s: &[f32],)* $($c: f32,)* $($($b: $bt),*)?) {
                body::<f32>($($m,)* $($s,)* $($c,)* $($($b),*)?)
            }
            #[allow(clippy::too_many_arguments)]
            #[inline(never)]
            fn f64s($($m: &mut [f64],)* $($s: &[f64],)* $($c: f64,)* $($($b: $bt),*)?) {
                body::<f64>($($m,)* $($s,)* $($c,)* $($($b),*)?)
            }
            if F::IS_F32 {
                if let ($(Some($m),)* $(Some($s),)*) =
                    ($(F::as_f32_slice_mut($m),)* $(F::as_f32_slice($s),)*)
                {
                    return f32s($($m,)* $($s,)* $($c.as_f64() as f32,)* $($($b),*)?);
                }
            } else if let ($(Some($m),)* $(Some($s),)*) =
                ($(F::as_f64_slice_mut($m),)* $(F::as_f64_slice($s),)*)
            {
                return f64s($($m,)* $($s,)* $($c.as_f64(),)* $($($b),*)?);
            }
            body::<F>($($m,)* $($s,)* $($c,)* $($($b),*)?)
        }
    };
}

concrete! {
    /// `acc += x` element-wise (gradient accumulation).
    pub fn add_assign(acc: mut; x: slice;) {
        for (a, &x) in acc.iter_mut().zip(x) {
            *a += x;
        }
    }
}
