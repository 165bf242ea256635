//! Run-time SIMD dispatch, in one place (docs/core.md, "Determinism").
//!
//! The scoring kernels are plain `#[inline(always)]` functions over slices. [`run`] calls one of them
//! through [`with_avx2`], a `#[target_feature(enable = "avx2")]` trampoline, when the CPU has AVX2: the
//! kernel is inlined into the trampoline and so compiled a second time with 256-bit vectors. The closure
//! passed to [`run`] must itself be `#[inline(always)]` (`simd::run(s, #[inline(always)] || kernel(..))`):
//! LLVM does not inline a large closure on its own, and a kernel left out of line runs without AVX2 (still
//! correct, measured 10–30% slower). Results are
//! bit-identical to the portable build because the kernels use no FMA contraction and every reduction has
//! a fixed order (explicit accumulators in `linalg`): only the SIMD width changes.

/// Which build of a kernel to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    /// AVX2 when the CPU has it, else portable.
    Best,
    /// Portable code only (tests compare it with `Best` bit for bit).
    Portable,
}

/// Runs `kernel` with the build `simd` asks for.
#[inline(always)]
pub fn run<R>(simd: Simd, kernel: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if simd == Simd::Best && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { with_avx2(kernel) };
        }
    }
    let _ = simd;
    kernel()
}

/// `kernel()` compiled with AVX2 enabled (the kernel, being `#[inline(always)]`, is inlined here).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn with_avx2<R>(kernel: impl FnOnce() -> R) -> R {
    kernel()
}
