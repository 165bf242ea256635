//! Versioned, CRC-checked snapshot encoding (docs/core.md, "Snapshot format").
//!
//! Layout (all integers and floats little-endian, floats as IEEE-754 binary64 bit patterns):
//!
//! ```text
//! magic        8 bytes  b"EDGESELB"
//! version      u32      1
//! policy       u8       0 disjoint_linucb, 1 hybrid_linucb, 2 lin_ts
//! device_dim   u32      d
//! model_dim    u32      p
//! alpha, lam   f64, f64
//! refactor_every, seed, rng_state, n_updates    u64 ×4
//! has_shared   u8       1 iff the statistics are hybrid (k = (d+1)(p+1))
//!   [shared]   n u64, since_refactor u64, A_0 f64×k², A_0⁻¹ f64×k², b_0 f64×k
//! n_arms       u32
//!   per arm    id_len u32, id UTF-8 bytes, m f64×p, n u64, since_refactor u64,
//!              A f64×d², A⁻¹ f64×d², b f64×d, s f64×d
//! crc32        u32      CRC-32 (IEEE) of every byte before it
//! ```
//!
//! Only exact statistics are stored; derived data (θ, β, the packed scoring rows) is recomputed by the
//! same code that maintains it during updates, so a restored bandit scores bit-identically.

use std::collections::HashSet;
use std::sync::Arc;

use crate::bandit::{Arm, Bandit, Params, Policy, Shared};
use crate::error::{CoreError, CoreResult};

pub const MAGIC: &[u8; 8] = b"EDGESELB";
pub const VERSION: u32 = 1;

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

pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn f64s(&mut self, v: &[f64]) {
        self.0.reserve(v.len() * 8);
        for &x in v {
            self.f64(x);
        }
    }
}

pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

fn truncated(what: &str) -> CoreError {
    CoreError::snapshot(format!(
        "snapshot is truncated or malformed (while reading {what})"
    ))
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize, what: &str) -> CoreResult<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| truncated(what))?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| truncated(what))?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &str) -> CoreResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
    pub(crate) fn u8(&mut self, what: &str) -> CoreResult<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn u32(&mut self, what: &str) -> CoreResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &str) -> CoreResult<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn f64(&mut self, what: &str) -> CoreResult<f64> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }
    /// `n` finite floats.
    pub(crate) fn f64s(&mut self, n: usize, what: &str) -> CoreResult<Vec<f64>> {
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
    let (d, pd, k) = b.dims();
    let mut w = Writer(Vec::with_capacity(
        128 + 16 * k * k + b.arms.len() * (64 + 8 * (pd + 2 * d * d + 2 * d)),
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
    match &b.shared {
        Some(sh) => {
            w.u8(1);
            w.u64(sh.n);
            w.u64(sh.since_refactor);
            w.f64s(&sh.a);
            w.f64s(&sh.a_inv);
            w.f64s(&sh.b);
        }
        None => w.u8(0),
    }
    w.u32(b.arms.len() as u32);
    for arm in &b.arms {
        w.u32(arm.id.len() as u32);
        w.0.extend_from_slice(arm.id.as_bytes());
        w.f64s(&arm.m);
        w.u64(arm.n);
        w.u64(arm.since_refactor);
        w.f64s(&arm.a);
        w.f64s(&arm.a_inv);
        w.f64s(&arm.b);
        w.f64s(&arm.s);
    }
    w.seal()
}

impl Writer {
    /// Appends the CRC-32 of everything written so far and returns the blob.
    pub(crate) fn seal(mut self) -> Vec<u8> {
        let crc = crc32(&self.0);
        self.u32(crc);
        self.0
    }
}

/// Checks a blob's magic, then its version, then its CRC; returns everything before the CRC (the reader
/// starts after the 12-byte header).
pub(crate) fn checked_body<'a>(
    data: &'a [u8],
    magic: &[u8; 8],
    version: u32,
) -> CoreResult<&'a [u8]> {
    let shown = String::from_utf8_lossy(magic);
    if data.len() < magic.len() || &data[..magic.len()] != magic {
        return Err(CoreError::snapshot(format!(
            "not an edgesel snapshot (missing magic b\"{shown}\")"
        )));
    }
    if data.len() < magic.len() + 4 + 4 {
        return Err(CoreError::snapshot(
            "snapshot is truncated (no version/checksum)",
        ));
    }
    let mut vb = [0u8; 4];
    vb.copy_from_slice(&data[8..12]);
    let found = u32::from_le_bytes(vb);
    if found != version {
        return Err(CoreError::snapshot(format!(
            "unsupported snapshot format version {found} (this build reads version {version})"
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
    Ok(body)
}

/// Decodes and validates a snapshot.
pub fn decode(data: &[u8]) -> CoreResult<Bandit> {
    let body = checked_body(data, MAGIC, VERSION)?;
    let mut r = Reader { buf: body, pos: 12 };
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
    let params = Params::new(
        policy.name(),
        i64::from(d),
        i64::from(pd),
        alpha,
        lam,
        i64::try_from(refactor_every).unwrap_or(-1),
        seed,
    )
    .map_err(|e| CoreError::snapshot(format!("snapshot holds invalid parameters: {e}")))?;
    let (d, pd) = (params.device_dim, params.model_dim);
    let k = params.joint_dim();
    let has_shared = r.u8("shared flag")?;
    let shared = match (has_shared, params.is_hybrid()) {
        (1, true) => {
            let n = r.u64("shared n_updates")?;
            let since_refactor = r.u64("shared refactor counter")?;
            let a = r.f64s(k * k, "shared A")?;
            let a_inv = r.f64s(k * k, "shared A inverse")?;
            let b = r.f64s(k, "shared b")?;
            Some(Shared {
                a,
                a_inv,
                b,
                beta: vec![0.0; k],
                n,
                since_refactor,
            })
        }
        (0, false) => None,
        _ => {
            return Err(CoreError::snapshot(
                "snapshot's shared-statistics flag does not match its policy",
            ))
        }
    };
    let n_arms = r.u32("arm count")? as usize;
    let mut arms = Vec::new();
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
        let m = r.f64s(pd, "model features")?;
        let n = r.u64("arm n_updates")?;
        let since_refactor = r.u64("arm refactor counter")?;
        let a = r.f64s(d * d, "arm A")?;
        let a_inv = r.f64s(d * d, "arm A inverse")?;
        let b = r.f64s(d, "arm b")?;
        let s = r.f64s(d, "arm s")?;
        arms.push(Arm {
            id: Arc::from(id),
            m,
            a,
            a_inv,
            b,
            s,
            n,
            since_refactor,
        });
    }
    if r.pos != body.len() {
        return Err(CoreError::snapshot(format!(
            "snapshot has {} unexpected trailing bytes",
            body.len() - r.pos
        )));
    }
    Ok(Bandit::from_parts(
        params, rng_state, n_updates, shared, arms,
    ))
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
