//! Versioned, CRC-checked snapshot encoding (docs/core.md, "Snapshot format").
//!
//! Layout (all integers and floats little-endian, floats as IEEE-754 binary64 bit patterns):
//!
//! ```text
//! magic        8 bytes  b"EDGESELB"
//! version      u32      3 (versions 1 and 2 are still read: 1 has no forced_sampling, neither has
//!                       half_life, the stamps and the priors)
//! policy       u8       0 disjoint_linucb, 1 hybrid_linucb, 2 lin_ts
//! device_dim   u32      d
//! model_dim    u32      p
//! alpha, lam   f64, f64
//! refactor_every, seed, rng_state, n_updates    u64 ×4
//! forced_sampling f64   ε (absent in version 1)
//! half_life    u64      forgetting, 0 = none (absent before version 3)
//! layout part  written by the statistics layout (`Statistics::encode_shared`); both current layouts:
//!   has_shared u8 1 iff the statistics are hybrid (k = (d+1)(p+1)), then
//!   [shared]   n u64, since_refactor u64, stamp u64, A_0 f64×k², A_0⁻¹ f64×k², b_0 f64×k, P_0 f64×k
//! n_arms       u32
//!   per arm    id_len u32, id UTF-8 bytes, then the layout's part (`Statistics::encode_arm`); both
//!              current layouts: m f64×p, n u64, since_refactor u64, stamp u64, A f64×d², A⁻¹ f64×d²,
//!              b f64×d, s f64×d, P f64×d  (stamp and P absent before version 3)
//! crc32        u32      CRC-32 (IEEE) of every byte before it
//! ```
//!
//! Only exact statistics are stored; derived data (θ, β, the packed scoring rows) is recomputed by the
//! same code that maintains it during updates, so a restored bandit scores bit-identically.

use std::collections::HashSet;
use std::sync::Arc;

use crate::bandit::Bandit;
use crate::error::{CoreError, CoreResult};
use crate::params::{Params, Policy};
use crate::rng::SplitMix64;

pub const MAGIC: &[u8; 8] = b"EDGESELB";
/// The version this build writes.
pub const VERSION: u32 = 3;
/// The versions this build reads (1 lacks `forced_sampling`, which is then 0; 1 and 2 lack forgetting:
/// `half_life` 0, every stamp the update count, every prior `λ`).
pub const READABLE_VERSIONS: [u32; 3] = [1, 2, 3];

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE 802.3, reflected, as in zlib / `binascii.crc32`).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &byte in data {
        c = CRC_TABLE[((c ^ byte as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

/// Little-endian encoder (the statistics layouts write their own parts through it).
pub struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f64s(&mut self, v: &[f64]) {
        self.0.reserve(v.len() * 8);
        for &x in v {
            self.f64(x);
        }
    }
}

/// Little-endian decoder with errors that say what was being read.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Format version of the blob (layouts read version-dependent fields).
    pub version: u32,
}

impl<'a> Reader<'a> {
    /// A reader of a body from [`checked_body`], after its 12-byte header (magic and version).
    pub fn after_header(body: &'a [u8], version: u32) -> Self {
        Reader {
            buf: body,
            pos: 12,
            version,
        }
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> CoreResult<()> {
        if self.pos != self.buf.len() {
            return Err(CoreError::snapshot(format!(
                "snapshot has {} unexpected trailing bytes",
                self.buf.len() - self.pos
            )));
        }
        Ok(())
    }
}

fn truncated(what: &str) -> CoreError {
    CoreError::snapshot(format!(
        "snapshot is truncated or malformed (while reading {what})"
    ))
}

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize, what: &str) -> CoreResult<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| truncated(what))?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| truncated(what))?;
        self.pos = end;
        Ok(s)
    }
    pub fn array<const N: usize>(&mut self, what: &str) -> CoreResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
    pub fn u8(&mut self, what: &str) -> CoreResult<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u32(&mut self, what: &str) -> CoreResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &str) -> CoreResult<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub fn f64(&mut self, what: &str) -> CoreResult<f64> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }
    /// `n` finite floats.
    pub fn f64s(&mut self, n: usize, what: &str) -> CoreResult<Vec<f64>> {
        let bytes = self.take(n.checked_mul(8).ok_or_else(|| truncated(what))?, what)?;
        let v: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                f64::from_le_bytes(a)
            })
            .collect();
        if v.iter().any(|x| !x.is_finite()) {
            return Err(CoreError::snapshot(format!(
                "snapshot holds a non-finite value in {what}"
            )));
        }
        Ok(v)
    }
}

/// Encodes the full state.
pub fn encode(b: &Bandit) -> Vec<u8> {
    let p = b.params();
    let (d, pd, k) = (p.device_dim, p.model_dim, p.joint_dim());
    let mut w = Writer(Vec::with_capacity(
        128 + 16 * k * k + b.len() * (64 + 8 * (pd + 2 * d * d + 2 * d)),
    ));
    w.0.extend_from_slice(MAGIC);
    w.u32(VERSION);
    w.u8(p.policy.code());
    w.u32(d as u32);
    w.u32(pd as u32);
    w.f64(p.alpha);
    w.f64(p.lam);
    w.u64(p.refactor_every);
    w.u64(p.seed);
    w.u64(b.rng_state());
    w.u64(b.n_updates);
    w.f64(p.forced_sampling);
    w.u64(p.half_life);
    b.stats.encode_shared(&mut w);
    w.u32(b.len() as u32);
    for i in 0..b.len() {
        let id = b.id_at(i);
        w.u32(id.len() as u32);
        w.0.extend_from_slice(id.as_bytes());
        b.stats.encode_arm(i, &mut w);
    }
    w.seal()
}

impl Writer {
    /// Appends the CRC-32 of everything written so far and returns the blob.
    pub fn seal(mut self) -> Vec<u8> {
        let crc = crc32(&self.0);
        self.u32(crc);
        self.0
    }
}

/// Checks a blob's magic, then its version (one of `readable`), then its CRC; returns the version and
/// everything before the CRC (a reader starts after the 12-byte header).
pub fn checked_body<'a>(
    data: &'a [u8],
    magic: &[u8; 8],
    readable: &[u32],
) -> CoreResult<(u32, &'a [u8])> {
    if data.len() < magic.len() || &data[..magic.len()] != magic {
        return Err(CoreError::snapshot(format!(
            "not an edgesel snapshot (missing magic b\"{}\")",
            String::from_utf8_lossy(magic)
        )));
    }
    if data.len() < magic.len() + 4 + 4 {
        return Err(CoreError::snapshot(
            "snapshot is truncated (no version/checksum)",
        ));
    }
    let mut vb = [0u8; 4];
    vb.copy_from_slice(&data[8..12]);
    let version = u32::from_le_bytes(vb);
    if !readable.contains(&version) {
        return Err(CoreError::snapshot(format!(
            "unsupported snapshot format version {version} (this build reads versions {readable:?})"
        )));
    }
    let (body, tail) = data.split_at(data.len() - 4);
    let mut cb = [0u8; 4];
    cb.copy_from_slice(tail);
    let stored = u32::from_le_bytes(cb);
    let actual = crc32(body);
    if stored != actual {
        return Err(CoreError::snapshot(format!(
            "snapshot checksum mismatch (stored {stored:#010x}, computed {actual:#010x}): \
             the blob is corrupted or truncated"
        )));
    }
    Ok((version, body))
}

/// Decodes and validates a snapshot (format version 3, or 2 / 1: see [`READABLE_VERSIONS`]).
pub fn decode(data: &[u8]) -> CoreResult<Bandit> {
    let (version, body) = checked_body(data, MAGIC, &READABLE_VERSIONS)?;
    let mut r = Reader::after_header(body, version);
    let code = r.u8("policy")?;
    let policy = Policy::from_code(code)
        .ok_or_else(|| CoreError::snapshot(format!("snapshot has unknown policy code {code}")))?;
    let d = r.u32("device_dim")?;
    let pd = r.u32("model_dim")?;
    let alpha = r.f64("alpha")?;
    let lam = r.f64("lam")?;
    let refactor_every = r.u64("refactor_every")?;
    let seed = r.u64("seed")?;
    let rng_state = r.u64("rng state")?;
    let n_updates = r.u64("n_updates")?;
    let forced_sampling = if version >= 2 {
        r.f64("forced_sampling")?
    } else {
        0.0
    };
    let half_life = if version >= 3 { r.u64("half_life")? } else { 0 };
    let params = Params::new(
        policy.name(),
        i64::from(d),
        i64::from(pd),
        alpha,
        lam,
        i64::try_from(refactor_every).unwrap_or(-1),
        seed,
    )
    .and_then(|p| p.with_forced_sampling(forced_sampling))
    .and_then(|p| p.with_half_life(i64::try_from(half_life).unwrap_or(-1)))
    .map_err(|e| CoreError::snapshot(format!("snapshot holds invalid parameters: {e}")))?;
    let mut b = Bandit::new(params);
    b.rng = SplitMix64::new(rng_state);
    b.n_updates = n_updates;
    b.stats.forgetting_mut().clock = n_updates;
    b.stats.decode_shared(&mut r)?;
    let n_arms = r.u32("arm count")? as usize;
    let mut seen = HashSet::new();
    for j in 0..n_arms {
        let len = r.u32("arm id length")? as usize;
        let id = std::str::from_utf8(r.take(len, "arm id")?)
            .map_err(|_| CoreError::snapshot(format!("arm {j} has an id that is not UTF-8")))?;
        if id.is_empty() || !seen.insert(id.to_owned()) {
            return Err(CoreError::snapshot(format!(
                "arm {j} has an empty or duplicate id {id:?}"
            )));
        }
        b.push_id(Arc::from(id));
        b.stats.decode_arm(&mut r)?;
    }
    r.finish()?;
    b.stats.rebuild();
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_reference() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }
}
