//! Bandit-level tests: fast scoring vs naive formulas, snapshots, edge cases.

use crate::bandit::Bandit;
use crate::error::CoreError;
use crate::features::joint_features;
use crate::linalg::{add_outer, cholesky_inverse, dot, matvec, scaled_identity};
use crate::params::Params;
use crate::snapshot::{decode, encode};
use std::collections::HashMap;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64) / ((1u64 << 53) as f64) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn bandit(policy: &str, d: i64, p: i64, alpha: f64, refactor_every: i64) -> Bandit {
    Bandit::new(Params::new(policy, d, p, alpha, 0.7, refactor_every, 5).expect("params"))
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}

/// Hybrid scoring through the G contraction and the simplified mean vs. the textbook formulas with the
/// joint vector z built explicitly and every matrix inverted directly.
#[test]
fn hybrid_fast_scoring_matches_naive() {
    let (d, p) = (4usize, 3usize);
    let k = (d + 1) * (p + 1);
    let lam = 0.7;
    let mut rng = Lcg(99);
    let mut b = bandit("hybrid_linucb", d as i64, p as i64, 1.3, 1000);
    let ids = ["a", "b", "c", "d"];
    let feats: Vec<Vec<f64>> = ids.iter().map(|_| rng.vec(p)).collect();
    for (id, m) in ids.iter().zip(&feats) {
        b.add_arm(id, Some(m)).expect("add");
    }
    // History, kept for the naive computation (the last arm stays cold).
    let mut hist: Vec<(usize, Vec<f64>, f64)> = Vec::new();
    for t in 0..60 {
        let a = t % 3;
        let x = rng.vec(d);
        let r = rng.next();
        b.update(ids[a], &x, r).expect("update");
        hist.push((a, x, r));
    }
    // Naive shared model.
    let mut a0 = scaled_identity(k, lam);
    let mut b0 = vec![0.0; k];
    for (a, x, r) in &hist {
        let z = joint_features(x, &feats[*a]);
        add_outer(&mut a0, k, &z);
        for (bi, zi) in b0.iter_mut().zip(&z) {
            *bi += r * zi;
        }
    }
    let a0_inv = cholesky_inverse(&a0, k).expect("spd");
    let mut beta = vec![0.0; k];
    matvec(&a0_inv, k, &b0, &mut beta);

    let x = rng.vec(d);
    let scores = b.score(&x, None::<&[&str]>).expect("score");
    for (ai, id) in ids.iter().enumerate() {
        // Naive per-arm: A_a, b_a, B_a = Σ x zᵀ (d × k).
        let mut aa = scaled_identity(d, lam);
        let mut ba = vec![0.0; d];
        let mut bmat = vec![0.0; d * k];
        for (a, xh, r) in hist.iter().filter(|h| h.0 == ai) {
            add_outer(&mut aa, d, xh);
            let z = joint_features(xh, &feats[*a]);
            for i in 0..d {
                ba[i] += r * xh[i];
                for j in 0..k {
                    bmat[i * k + j] += xh[i] * z[j];
                }
            }
        }
        let aa_inv = cholesky_inverse(&aa, d).expect("spd");
        let mut bb = vec![0.0; d];
        for i in 0..d {
            bb[i] = dot(&bmat[i * k..(i + 1) * k], &beta);
        }
        let rhs: Vec<f64> = (0..d).map(|i| ba[i] - bb[i]).collect();
        let mut theta = vec![0.0; d];
        matvec(&aa_inv, d, &rhs, &mut theta);
        let z = joint_features(&x, &feats[ai]);
        let mut cz = vec![0.0; k];
        matvec(&a0_inv, k, &z, &mut cz);
        let mut ax = vec![0.0; d];
        matvec(&aa_inv, d, &x, &mut ax);
        let mean = dot(&z, &beta) + dot(&x, &theta);
        let var = dot(&z, &cz) + dot(&x, &ax);
        let bonus = 1.3 * var.sqrt();
        assert_eq!(&*scores.ids[ai], *id);
        assert!(
            close(scores.mean[ai], mean, 1e-9),
            "{id}: {} vs {mean}",
            scores.mean[ai]
        );
        assert!(
            close(scores.bonus[ai], bonus, 1e-9),
            "{id}: {} vs {bonus}",
            scores.bonus[ai]
        );
        assert!(close(scores.total[ai], mean + bonus, 1e-9));
        // arm_stats θ matches the naive θ.
        let st = b.arm_stats(id).expect("stats");
        for (t1, t2) in st.theta.iter().zip(&theta) {
            assert!(close(*t1, *t2, 1e-9));
        }
    }
    // Cold arm: mean = zᵀβ, per-arm variance xᵀx/λ.
    let z = joint_features(&x, &feats[3]);
    assert!(close(scores.mean[3], dot(&z, &beta), 1e-9));
    let sh = b.shared_stats().expect("shared");
    for (u, v) in sh.beta.iter().zip(&beta) {
        assert!(close(*u, *v, 1e-9));
    }
}

#[test]
fn disjoint_scoring_matches_naive_and_select_ties() {
    let d = 5;
    let mut rng = Lcg(3);
    let mut b = bandit("disjoint_linucb", d as i64, 0, 0.9, 1000);
    for id in ["z", "y", "x"] {
        b.add_arm(id, None).expect("add");
    }
    let mut aa = scaled_identity(d, 0.7);
    let mut ba = vec![0.0; d];
    for _ in 0..25 {
        let x = rng.vec(d);
        let r = rng.next();
        b.update("y", &x, r).expect("update");
        add_outer(&mut aa, d, &x);
        for i in 0..d {
            ba[i] += r * x[i];
        }
    }
    let inv = cholesky_inverse(&aa, d).expect("spd");
    let mut theta = vec![0.0; d];
    matvec(&inv, d, &ba, &mut theta);
    let x = rng.vec(d);
    let mut ix = vec![0.0; d];
    matvec(&inv, d, &x, &mut ix);
    let s = b.score(&x, Some(&["y", "z"])).expect("score");
    assert!(close(s.mean[0], dot(&theta, &x), 1e-10));
    assert!(close(s.bonus[0], 0.9 * dot(&x, &ix).sqrt(), 1e-10));
    // Cold arms z and x tie exactly: the smallest id wins.
    let c = b.select(&x, Some(&["z", "x"])).expect("select");
    assert_eq!(&*c.id, "x");
    assert_eq!(s.mean[1], 0.0);
    assert!(close(s.bonus[1], 0.9 * (dot(&x, &x) / 0.7).sqrt(), 1e-12));
}

#[test]
fn refactorization_keeps_inverse_exact() {
    for policy in ["disjoint_linucb", "hybrid_linucb"] {
        let mut rng = Lcg(17);
        let mut b = bandit(policy, 3, 2, 1.0, 7);
        b.add_arm("m", Some(&[0.5, -0.25])).expect("add");
        for _ in 0..50 {
            let x = rng.vec(3);
            b.update("m", &x, rng.next()).expect("update");
        }
        let st = b.arm_stats("m").expect("stats");
        let direct = cholesky_inverse(&st.a, 3).expect("spd");
        assert!(st
            .a_inv
            .iter()
            .zip(&direct)
            .all(|(u, v)| (u - v).abs() < 1e-12));
        assert_eq!(st.n_updates, 50);
        // 50 = 7·7 + 1: the inverse was re-factorized at update 49, then one Sherman-Morrison step.
        assert_eq!(b.stats.since_refactor(0), 1);
    }
    // refactor_every = 1: every update re-factorizes.
    let mut b = bandit("disjoint_linucb", 2, 0, 1.0, 1);
    b.add_arm("m", None).expect("add");
    b.update("m", &[1.0, 2.0], 1.0).expect("update");
    let st = b.arm_stats("m").expect("stats");
    assert_eq!(st.a_inv, cholesky_inverse(&st.a, 2).expect("spd"));
}

fn trained(policy: &str) -> Bandit {
    let mut rng = Lcg(1234);
    let mut b = bandit(policy, 4, 2, 0.8, 5);
    for i in 0..6 {
        b.add_arm(&format!("arm-{i}"), Some(&rng.vec(2)))
            .expect("add");
    }
    for t in 0..40 {
        let x = rng.vec(4);
        b.update(&format!("arm-{}", t % 5), &x, rng.next())
            .expect("update");
    }
    b
}

#[test]
fn snapshot_round_trip_is_bit_identical() {
    for policy in ["disjoint_linucb", "hybrid_linucb", "lin_ts"] {
        let b = trained(policy);
        let blob = encode(&b);
        let r = decode(&blob).expect("decode");
        assert_eq!(encode(&r), blob, "{policy}: re-encoding differs");
        let x = [0.1, -0.3, 0.7, 0.2];
        let s1 = b.score(&x, None::<&[&str]>).expect("score");
        let s2 = r.score(&x, None::<&[&str]>).expect("score");
        assert_eq!(s1.ids, s2.ids);
        let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&s1.mean), bits(&s2.mean), "{policy}");
        assert_eq!(bits(&s1.bonus), bits(&s2.bonus), "{policy}");
        assert_eq!(bits(&s1.total), bits(&s2.total), "{policy}");
        assert_eq!(b.n_updates(), r.n_updates());
        assert_eq!(b.rng_state(), r.rng_state());
        // Keeps learning identically.
        let (mut b, mut r) = (b, r);
        b.update("arm-5", &x, 0.5).expect("update");
        r.update("arm-5", &x, 0.5).expect("update");
        assert_eq!(encode(&b), encode(&r));
    }
}

#[test]
fn snapshot_corruption_is_detected() {
    let blob = encode(&trained("hybrid_linucb"));
    let is_snapshot_err = |r: Result<Bandit, CoreError>| matches!(r, Err(CoreError::Snapshot(_)));
    // Every single-bit flip in a sample of positions.
    for pos in (0..blob.len()).step_by(97).chain([blob.len() - 1]) {
        let mut bad = blob.clone();
        bad[pos] ^= 0x10;
        assert!(is_snapshot_err(decode(&bad)), "flip at {pos} not detected");
    }
    // Truncations.
    for len in [0, 3, 8, 11, 12, 15, 100, blob.len() - 1] {
        assert!(is_snapshot_err(decode(&blob[..len])), "truncation to {len}");
    }
    // Foreign data and wrong version.
    assert!(is_snapshot_err(decode(b"PK\x03\x04 not a snapshot at all")));
    let mut v4 = blob.clone();
    v4[8] = 4;
    match decode(&v4) {
        Err(CoreError::Snapshot(m)) => assert!(m.contains("version 4"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    // Valid CRC over malformed content (e.g. trailing bytes) is still rejected.
    let mut body = blob[..blob.len() - 4].to_vec();
    body.push(0);
    let crc = crate::snapshot::crc32(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    assert!(is_snapshot_err(decode(&body)));
}

#[test]
fn thompson_sampling_is_reproducible() {
    let a = trained("lin_ts");
    let b = trained("lin_ts");
    let x = [0.3, 0.1, -0.2, 0.9];
    let sa: Vec<_> = (0..5)
        .map(|_| a.score(&x, None::<&[&str]>).expect("s").bonus)
        .collect();
    let sb: Vec<_> = (0..5)
        .map(|_| b.score(&x, None::<&[&str]>).expect("s").bonus)
        .collect();
    assert_eq!(sa, sb);
    assert_ne!(sa[0], sa[1]);
    // Negative bonuses occur (ε is a standard normal).
    assert!(sa.iter().flatten().any(|v| *v < 0.0));
}

#[test]
fn edge_cases() {
    let mut b = bandit("hybrid_linucb", 2, 1, 1.0, 10);
    let x = [0.5, 0.5];
    // Empty bandit.
    assert!(b.score(&x, None::<&[&str]>).expect("score").ids.is_empty());
    assert!(matches!(
        b.select(&x, None::<&[&str]>),
        Err(CoreError::Invalid(_))
    ));
    b.add_arm("a", Some(&[1.0])).expect("add");
    // Empty eligible list, unknown arm, NaN, wrong length.
    let empty: &[&str] = &[];
    assert!(matches!(
        b.select(&x, Some(empty)),
        Err(CoreError::Invalid(_))
    ));
    assert!(matches!(
        b.score(&x, Some(empty)),
        Err(CoreError::Invalid(_))
    ));
    assert!(matches!(
        b.select(&x, Some(&["nope"])),
        Err(CoreError::UnknownArm(_))
    ));
    assert!(matches!(
        b.update("nope", &x, 1.0),
        Err(CoreError::UnknownArm(_))
    ));
    assert!(matches!(
        b.select(&[f64::NAN, 0.0], None::<&[&str]>),
        Err(CoreError::Invalid(_))
    ));
    assert!(matches!(
        b.update("a", &x, f64::INFINITY),
        Err(CoreError::Invalid(_))
    ));
    assert!(matches!(
        b.update("a", &[1.0], 1.0),
        Err(CoreError::Invalid(_))
    ));
    assert!(matches!(
        b.update("a", &[1e200, 0.0], 1.0),
        Err(CoreError::Invalid(_))
    ));
    assert!(matches!(
        b.update("a", &x, 1e300),
        Err(CoreError::Invalid(_))
    ));
    assert!(matches!(
        b.add_arm("b", Some(&[1e300])),
        Err(CoreError::Invalid(_))
    ));
    assert!(matches!(
        b.add_arm("a", Some(&[1.0])),
        Err(CoreError::Invalid(_))
    ));
    assert!(matches!(b.add_arm("b", None), Err(CoreError::Invalid(_))));
    assert!(matches!(
        b.add_arm("b", Some(&[1.0, 2.0])),
        Err(CoreError::Invalid(_))
    ));
    assert!(matches!(
        b.add_arm("b", Some(&[f64::NAN])),
        Err(CoreError::Invalid(_))
    ));
    assert!(matches!(
        b.add_arm("", Some(&[1.0])),
        Err(CoreError::Invalid(_))
    ));
    // update_batch validates everything first.
    let before = encode(&b);
    let r = b.update_batch(&["a", "a"], &[0.1, 0.2, f64::NAN, 0.0], &[1.0, 1.0]);
    assert!(matches!(r, Err(CoreError::Invalid(_))));
    let r = b.update_batch(&["a", "zz"], &[0.1, 0.2, 0.3, 0.0], &[1.0, 1.0]);
    assert!(matches!(r, Err(CoreError::UnknownArm(_))));
    assert_eq!(encode(&b), before);
    // Remove and re-add; shared statistics stay.
    b.update("a", &x, 1.0).expect("update");
    b.remove_arm("a").expect("remove");
    assert!(matches!(b.remove_arm("a"), Err(CoreError::UnknownArm(_))));
    assert_eq!(b.shared_stats().expect("shared").n_updates, 1);
    b.add_arm("a", Some(&[1.0])).expect("re-add");
    assert_eq!(b.arm_stats("a").expect("stats").n_updates, 0);
    // Bad parameters.
    let bad = [
        Params::new("nope", 2, 0, 1.0, 1.0, 10, 0),
        Params::new("lin_ts", 0, 0, 1.0, 1.0, 10, 0),
        Params::new("lin_ts", 2, -1, 1.0, 1.0, 10, 0),
        Params::new("lin_ts", 2, 0, -1.0, 1.0, 10, 0),
        Params::new("lin_ts", 2, 0, 1.0, 0.0, 10, 0),
        Params::new("lin_ts", 2, 0, 1.0, f64::NAN, 10, 0),
        Params::new("lin_ts", 2, 0, 1.0, 1.0, 0, 0),
        Params::new("hybrid_linucb", 1000, 1000, 1.0, 1.0, 10, 0),
        Params::new("disjoint_linucb", 1 << 40, 0, 1.0, 1.0, 10, 0),
    ];
    for p in bad {
        assert!(matches!(p, Err(CoreError::Invalid(_))), "{p:?}");
    }
}

#[test]
fn batch_equals_sequential_and_removal_keeps_order() {
    let mut rng = Lcg(8);
    let mut a = bandit("hybrid_linucb", 3, 2, 1.0, 4);
    for id in ["p", "q", "r"] {
        a.add_arm(id, Some(&rng.vec(2))).expect("add");
    }
    let mut b = decode(&encode(&a)).expect("copy");
    let ids = ["q", "p", "q", "r", "p", "q"];
    let xs = rng.vec(3 * ids.len());
    let rs = rng.vec(ids.len());
    for ((id, x), r) in ids.iter().zip(xs.chunks(3)).zip(&rs) {
        a.update(id, x, *r).expect("update");
    }
    b.update_batch(&ids, &xs, &rs).expect("batch");
    assert_eq!(encode(&a), encode(&b));
    a.remove_arm("p").expect("remove");
    let names: Vec<String> = a.arm_ids().iter().map(|s| s.to_string()).collect();
    assert_eq!(names, ["q", "r"]);
    let s = a.score(&[0.1, 0.2, 0.3], Some(&["r", "q"])).expect("score");
    let t = b.score(&[0.1, 0.2, 0.3], Some(&["r", "q"])).expect("score");
    assert_eq!(s.total, t.total);
}

#[test]
fn learns_the_best_arm() {
    // Arm "good" pays x·w, "bad" pays −x·w; after feedback LinUCB with α=0 prefers "good".
    let mut rng = Lcg(77);
    for policy in ["disjoint_linucb", "hybrid_linucb", "lin_ts"] {
        let mut b = bandit(policy, 3, 1, 0.0, 50);
        b.add_arm("good", Some(&[1.0])).expect("add");
        b.add_arm("bad", Some(&[-1.0])).expect("add");
        let w = [0.5, 1.0, -0.3];
        for _ in 0..200 {
            let x = rng.vec(3);
            let r = dot(&x, &w);
            b.update("good", &x, r).expect("u");
            b.update("bad", &x, -r).expect("u");
        }
        let x = [0.4, 0.8, -0.2];
        assert_eq!(
            &*b.select(&x, None::<&[&str]>).expect("select").id,
            "good",
            "{policy}"
        );
    }
}

#[test]
fn simd_dispatch_is_bit_identical_to_portable_code() {
    for policy in ["disjoint_linucb", "hybrid_linucb"] {
        let b = trained(policy);
        let x = [0.25, -0.5, 0.125, 0.75];
        let s = b.score(&x, None::<&[&str]>).expect("score");
        let p = b.score_portable(&x);
        assert_eq!(p.len(), s.mean.len());
        for (i, (m, bo, t)) in p.into_iter().enumerate() {
            assert_eq!(m.to_bits(), s.mean[i].to_bits(), "{policy}");
            assert_eq!(bo.to_bits(), s.bonus[i].to_bits(), "{policy}");
            assert_eq!(t.to_bits(), s.total[i].to_bits(), "{policy}");
        }
    }
}

/// The hybrid derived data (`Q`, per-arm mean rows) is computed lazily, possibly for a subset of the arms
/// first: whatever was scored before, a bandit scores bit-identically to a fresh restore of its state.
#[test]
fn lazy_hybrid_caches_do_not_change_scores() {
    let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    let mut rng = Lcg(17);
    let mut b = trained("hybrid_linucb");
    for step in 0..6 {
        let x = rng.vec(4);
        // Warm some rows only (a subset, with a repeat), or all, or none, before comparing.
        match step % 3 {
            0 => {
                b.score(&x, Some(&["arm-1", "arm-3", "arm-1"]))
                    .expect("score");
            }
            1 => {
                b.score(&x, None::<&[&str]>).expect("score");
            }
            _ => {}
        }
        let fresh = decode(&encode(&b)).expect("decode");
        let s1 = b.score(&x, None::<&[&str]>).expect("score");
        let s2 = fresh.score(&x, None::<&[&str]>).expect("score");
        assert_eq!(bits(&s1.mean), bits(&s2.mean), "step {step}");
        assert_eq!(bits(&s1.total), bits(&s2.total), "step {step}");
        let portable: Vec<f64> = fresh.score_portable(&x).iter().map(|t| t.0).collect();
        assert_eq!(bits(&s1.mean), bits(&portable), "step {step}");
        b.update(&format!("arm-{}", step % 5), &x, rng.next())
            .expect("update");
        if step == 3 {
            b.remove_arm("arm-2").expect("remove");
            b.add_arm("arm-new", Some(&rng.vec(2))).expect("add");
        }
    }
}

/// Rewrites a current (version 3) blob of [`trained`] (d = 4, p = 2, six arms, half_life 0) in format
/// version 2 (no `half_life`, stamps or priors) or 1 (also no `forced_sampling`).
fn downgrade(v3: &[u8], to: u32, hybrid: bool) -> Vec<u8> {
    let (d, p, k) = (4usize, 2usize, 15usize);
    let body = &v3[..v3.len() - 4];
    // Header: magic 8, version 4, policy 1, d 4, p 4, alpha 8, lam 8, four u64 = 69 bytes, ε, half_life.
    let mut out = body[..69].to_vec();
    out[8..12].copy_from_slice(&to.to_le_bytes());
    if to >= 2 {
        out.extend_from_slice(&body[69..77]);
    }
    let mut pos = 85;
    let mut copy = |n: usize, keep: bool, out: &mut Vec<u8>| {
        if keep {
            out.extend_from_slice(&body[pos..pos + n]);
        }
        pos += n;
    };
    copy(1, true, &mut out); // has_shared
    if hybrid {
        copy(16, true, &mut out); // n, since_refactor
        copy(8, false, &mut out); // stamp
        copy(8 * (2 * k * k + k), true, &mut out); // A_0, A_0⁻¹, b_0
        copy(8 * k, false, &mut out); // P_0
    }
    copy(4, true, &mut out); // n_arms
    for _ in 0..6 {
        copy(4 + 5 + 8 * p + 16, true, &mut out); // id, m, n, since_refactor
        copy(8, false, &mut out); // stamp
        copy(8 * (2 * d * d + 2 * d), true, &mut out); // A, A⁻¹, b, s
        copy(8 * d, false, &mut out); // P
    }
    assert_eq!(pos, body.len());
    let crc = crate::snapshot::crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Version-1 and version-2 blobs still read, as ε = 0 (version 1) and half_life = 0, to the same state.
#[test]
fn snapshot_versions_1_and_2_are_still_read() {
    for policy in ["disjoint_linucb", "hybrid_linucb", "lin_ts"] {
        let b = trained(policy);
        let v3 = encode(&b);
        for to in [1, 2] {
            let old = downgrade(&v3, to, b.is_hybrid());
            let r = decode(&old).unwrap_or_else(|e| panic!("version {to} decodes: {e}"));
            assert_eq!(r.params().half_life, 0);
            if to == 1 {
                assert_eq!(r.params().forced_sampling, 0.0);
            }
            // Same state; the stamps (which older blobs lack) read as the update count.
            assert_eq!(
                downgrade(&encode(&r), to, b.is_hybrid()),
                old,
                "{policy} from {to}"
            );
            let x = [0.1, -0.3, 0.7, 0.2];
            let same = decode(&v3).expect("decode");
            let (s1, s2) = (
                same.score(&x, None::<&[&str]>),
                r.score(&x, None::<&[&str]>),
            );
            assert_eq!(
                s1.expect("score").total,
                s2.expect("score").total,
                "{policy}"
            );
        }
    }
}

fn with_eps(policy: &str, eps: f64) -> Bandit {
    let p = Params::new(policy, 4, 2, 0.8, 0.7, 5, 11)
        .and_then(|p| p.with_forced_sampling(eps))
        .expect("params");
    let mut b = Bandit::new(p);
    let mut rng = Lcg(99);
    for i in 0..6 {
        b.add_arm(&format!("arm-{i}"), Some(&rng.vec(2)))
            .expect("add");
    }
    b
}

/// One closed-loop step: decide, then learn from a reward that depends on the decision.
fn step(b: &mut Bandit, rng: &mut Lcg) -> (String, [u64; 4], bool) {
    let x = rng.vec(4);
    let c = b.select(&x, None::<&[&str]>).expect("select");
    let r = rng.next() + c.id.len() as f64 * 0.01;
    b.update(&c.id, &x, r).expect("update");
    let bits = [c.mean, c.bonus, c.total, c.propensity].map(f64::to_bits);
    (c.id.to_string(), bits, c.exploratory)
}

/// The forced-sampling draws and the Thompson normals come from the generator in the snapshot: a bandit
/// restored mid-run makes exactly the decisions of the one that never stopped.
#[test]
fn restored_bandit_makes_the_same_next_1000_decisions() {
    for (policy, eps) in [
        ("disjoint_linucb", 0.3),
        ("hybrid_linucb", 0.3),
        ("lin_ts", 0.3),
        ("lin_ts", 0.0),
    ] {
        let mut a = with_eps(policy, eps);
        let mut rng = Lcg(5);
        for _ in 0..50 {
            step(&mut a, &mut rng);
        }
        let mut b = decode(&encode(&a)).expect("decode");
        let mut forced = 0;
        for t in 0..1000 {
            let mut r2 = Lcg(rng.0);
            let got_a = step(&mut a, &mut rng);
            let got_b = step(&mut b, &mut r2);
            assert_eq!(got_a, got_b, "{policy} ε={eps} decision {t}");
            forced += usize::from(got_a.2);
        }
        assert!(
            eps == 0.0 || forced > 0,
            "{policy}: no exploratory decision"
        );
    }
}

#[test]
fn forced_sampling_propensities_are_exact() {
    let k = 6.0;
    let eps = 0.25;
    let mut b = with_eps("hybrid_linucb", eps);
    let mut rng = Lcg(3);
    for _ in 0..30 {
        step(&mut b, &mut rng);
    }
    let x = rng.vec(4);
    let mut counts = HashMap::new();
    let n = 20_000;
    for _ in 0..n {
        let s = b.score(&x, None::<&[&str]>).expect("score");
        let best = (0..s.total.len())
            .max_by(|&i, &j| {
                s.total[i]
                    .total_cmp(&s.total[j])
                    .then(s.ids[j].cmp(&s.ids[i]))
            })
            .expect("arms");
        let c = b.select(&x, None::<&[&str]>).expect("select");
        let expected = if c.id == s.ids[best] {
            1.0 - eps + eps / k
        } else {
            eps / k
        };
        assert_eq!(c.propensity, expected);
        *counts.entry(c.id.to_string()).or_insert(0usize) += 1;
        let i = s
            .ids
            .iter()
            .position(|id| *id == c.id)
            .expect("chosen arm was scored");
        assert_eq!(c.total.to_bits(), s.total[i].to_bits());
        assert_eq!(
            c.exploratory,
            s.mean[i] < s.mean.iter().cloned().fold(f64::MIN, f64::max)
        );
    }
    // Frequencies match the propensities (binomial sd ≤ 0.0035 at n = 20,000; 5 sd allowed).
    for (id, cnt) in &counts {
        let c = b.select(&x, Some(&[id.as_str()])).expect("select");
        assert_eq!(
            c.propensity, 1.0,
            "a single eligible arm is chosen for sure"
        );
        let freq = *cnt as f64 / n as f64;
        let is_best = freq > 0.5;
        let p = if is_best {
            1.0 - eps + eps / k
        } else {
            eps / k
        };
        assert!((freq - p).abs() < 0.018, "{id}: {freq} vs {p}");
    }
    // A repeated id counts once per position it holds.
    let uniform = with_eps("disjoint_linucb", 1.0);
    let c = uniform
        .select(&x, Some(&["arm-1", "arm-1", "arm-2", "arm-3"]))
        .expect("select");
    let expected = if &*c.id == "arm-1" { 0.5 } else { 0.25 };
    assert_eq!(c.propensity, expected);
}

#[test]
fn ucb_and_thompson_propensities_without_forced_sampling() {
    let x = [0.1, 0.2, -0.3, 0.4];
    let ucb = with_eps("hybrid_linucb", 0.0);
    let before = ucb.rng_state();
    let c = ucb.select(&x, None::<&[&str]>).expect("select");
    assert_eq!(c.propensity, 1.0);
    assert_eq!(
        ucb.rng_state(),
        before,
        "UCB without forced sampling draws nothing"
    );
    let ts = with_eps("lin_ts", 0.0);
    assert!(ts
        .select(&x, None::<&[&str]>)
        .expect("select")
        .propensity
        .is_nan());
    let ts = with_eps("lin_ts", 0.5);
    assert!(ts
        .select(&x, None::<&[&str]>)
        .expect("select")
        .propensity
        .is_nan());
    let ts = with_eps("lin_ts", 1.0);
    assert_eq!(
        ts.select(&x, None::<&[&str]>).expect("select").propensity,
        1.0 / 6.0
    );
    for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        let p = Params::new("lin_ts", 4, 2, 0.8, 0.7, 5, 11).expect("params");
        assert!(p.with_forced_sampling(bad).is_err(), "{bad}");
    }
}

fn forgetting(policy: &str, half_life: i64) -> Bandit {
    let p = Params::new(policy, 4, 2, 0.8, 0.7, 5, 11)
        .and_then(|p| p.with_forced_sampling(0.2))
        .and_then(|p| p.with_half_life(half_life))
        .expect("params");
    let mut b = Bandit::new(p);
    let mut rng = Lcg(42);
    for i in 0..6 {
        b.add_arm(&format!("arm-{i}"), Some(&rng.vec(2)))
            .expect("add");
    }
    b
}

/// With forgetting (half-lives from 1 event to more than the run), a restored bandit makes the same next decisions, its
/// snapshot re-encodes bit for bit, and the AVX2 scoring equals the portable one.
#[test]
fn forgetting_restores_exactly_and_scores_portably() {
    let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    for policy in ["disjoint_linucb", "hybrid_linucb", "lin_ts"] {
        for half_life in [1, 3, 50] {
            let mut a = forgetting(policy, half_life);
            let mut rng = Lcg(8);
            for _ in 0..200 {
                step(&mut a, &mut rng);
            }
            let blob = encode(&a);
            let b = decode(&blob).expect("decode");
            assert_eq!(b.params().half_life, half_life as u64);
            assert_eq!(encode(&b), blob);
            let x = [0.25, -0.5, 0.125, 0.75];
            let s = b.score(&x, None::<&[&str]>).expect("score");
            let b2 = decode(&blob).expect("decode");
            let p = b2.score_portable(&x);
            assert_eq!(
                bits(&s.mean),
                bits(&p.iter().map(|t| t.0).collect::<Vec<_>>())
            );
            if policy != "lin_ts" {
                assert_eq!(
                    bits(&s.total),
                    bits(&p.iter().map(|t| t.2).collect::<Vec<_>>())
                );
            }
            let mut b = decode(&blob).expect("decode");
            for t in 0..300 {
                let mut r2 = Lcg(rng.0);
                assert_eq!(
                    step(&mut a, &mut rng),
                    step(&mut b, &mut r2),
                    "{policy} half_life {half_life} decision {t}"
                );
            }
            assert_eq!(encode(&a), encode(&b));
        }
    }
}

/// A batch of updates and the same updates one by one give bit-identical states with forgetting (the
/// discount depends on the event count only, not on how events are grouped).
#[test]
fn forgetting_batch_equals_sequential() {
    for policy in ["disjoint_linucb", "hybrid_linucb"] {
        let mut a = forgetting(policy, 4);
        let mut b = forgetting(policy, 4);
        let mut rng = Lcg(3);
        let (mut ids, mut xs, mut rs) = (Vec::new(), Vec::new(), Vec::new());
        for t in 0..60 {
            let id = format!("arm-{}", (t * t) % 6);
            let x = rng.vec(4);
            let r = rng.next();
            a.update(&id, &x, r).expect("update");
            ids.push(id);
            xs.extend_from_slice(&x);
            rs.push(r);
        }
        b.update_batch(&ids, &xs, &rs).expect("batch");
        assert_eq!(encode(&a), encode(&b), "{policy}");
    }
}

/// The QoE model's targets forget exactly as the hybrid layout does: its `log_latency` target, fed
/// latencies only, is bit for bit a `hybrid_linucb` bandit with the same half-life fed `ln(L / budget)`
/// (uneven pulls, so the per-arm clocks differ from the shared one), and a snapshot carries the half-life.
#[test]
fn qoe_model_targets_forget_as_the_hybrid_layout() {
    use crate::qoe_model::{Observation, QoeModel, QoeParams, T_LATENCY};
    use crate::qoe_spec::QoeSpec;
    for half_life in [1_i64, 7, 300] {
        let qp = QoeParams::new(3, 2, 1.0, 0.7, 25, half_life).expect("qoe params");
        let spec = QoeSpec::default();
        let budget = spec.latency_budget_ms;
        let prefs = spec.resolve(None, None, [None; 4]).expect("prefs");
        let mut m = QoeModel::new(qp, spec, None).expect("qoe model");
        let p = Params::new("hybrid_linucb", 3, 2, 1.0, 0.7, 25, 0)
            .and_then(|p| p.with_half_life(half_life))
            .expect("params");
        let mut b = Bandit::new(p);
        let mut rng = Lcg(half_life as u64);
        for i in 0..4 {
            let f = rng.vec(2);
            m.add_arm(&format!("m{i}"), Some(&f), None).expect("add");
            b.add_arm(&format!("m{i}"), Some(&f)).expect("add");
        }
        for step in 0..400 {
            let x = rng.vec(3);
            // arm 0 most of the time, the others rarely
            let u = rng.next();
            let arm = if u < 0.5 {
                0
            } else {
                ((u * 1000.0) as usize) % 4
            };
            let latency =
                50.0 * (1.0 + arm as f64) * (1.5 + x[0]) * if step > 200 { 3.0 } else { 1.0 };
            let obs = Observation {
                latency_ms: Some(latency),
                ..Observation::default()
            };
            let id = format!("m{arm}");
            m.update(&id, &x, 0.5, &obs, &prefs).expect("qoe update");
            b.update(&id, &x, (latency / budget).ln()).expect("update");
        }
        let t = m.target(T_LATENCY);
        assert_eq!(t.params().half_life, half_life as u64);
        for i in 0..4 {
            let (s, r) = (
                t.arm_stats(&format!("m{i}")).expect("arm"),
                b.arm_stats(&format!("m{i}")).expect("arm"),
            );
            assert_eq!(s.n_updates, r.n_updates);
            assert_eq!((&s.a, &s.a_inv, &s.b), (&r.a, &r.a_inv, &r.b), "arm m{i}");
        }
        let (s, r) = (
            t.shared_stats().expect("shared"),
            b.shared_stats().expect("shared"),
        );
        assert_eq!((&s.a, &s.a_inv, &s.b), (&r.a, &r.a_inv, &r.b));
        let blob = m.to_bytes();
        let back = QoeModel::from_bytes(&blob).expect("restore");
        assert_eq!(back.params().half_life, half_life as u64);
        assert_eq!(back.to_bytes(), blob);
    }
}

/// The hybrid shared `A_0` adds the outer products of its updates when it is needed (refactorization,
/// forgetting, snapshot) rather than at each update: after every update, and across snapshots taken while
/// some wait, its statistics are bit for bit those of adding each at its update (the shared part of the
/// update done eagerly with `ridge::discount` + `ridge::rank_one_update`, as every matrix was updated
/// before), with and without forgetting, refactorizations often and never, batches and single updates.
#[test]
fn hybrid_shared_statistics_match_eager_updates_bit_for_bit() {
    use crate::features::{outer_into, with_bias};
    use crate::linalg::axpy;
    use crate::stats::ridge::{discount, rank_one_update, Forgetting, Ridge};
    let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    let (d, p, lam) = (3usize, 2usize, 0.7);
    let k = (d + 1) * (p + 1);
    for (every, half_life) in [(1000, 0), (7, 0), (1, 0), (1000, 40), (9, 25)] {
        let params = Params::new("hybrid_linucb", d as i64, p as i64, 1.0, lam, every, 5)
            .and_then(|q| q.with_half_life(half_life))
            .expect("params");
        let mut b = Bandit::new(params);
        let mut rng = Lcg(99 + every as u64);
        let feats: Vec<Vec<f64>> = (0..4).map(|_| rng.vec(p)).collect();
        for (i, m) in feats.iter().enumerate() {
            b.add_arm(&format!("arm-{i}"), Some(m)).expect("add");
        }
        let (mut a, mut a_inv) = (scaled_identity(k, lam), scaled_identity(k, 1.0 / lam));
        let (mut prior, mut bvec) = (vec![lam; k], vec![0.0; k]);
        let (mut stamp, mut since) = (0u64, 0u64);
        let mut forget = Forgetting::new(half_life as u64, 0);
        let mut scratch = vec![0.0; k];
        let mut restored: Option<Bandit> = None;
        for t in 0..150 {
            let n_rows = if t % 10 == 3 { 5 } else { 1 };
            let mut rows = Vec::new();
            for _ in 0..n_rows {
                let arm = (rng.next().abs() * 4.0) as usize % 4;
                rows.push((arm, rng.vec(d), rng.next()));
            }
            for (arm, x, r) in &rows {
                let clock = forget.tick();
                let mut z = vec![0.0; k];
                outer_into(&with_bias(x), &with_bias(&feats[*arm]), &mut z);
                let m = Ridge {
                    a: &mut a,
                    a_inv: &mut a_inv,
                    prior: &mut prior,
                    stamp: &mut stamp,
                    since_refactor: &mut since,
                };
                discount(&forget, lam, k, clock, m, &mut [&mut bvec], &mut scratch);
                rank_one_update(
                    &mut a,
                    &mut a_inv,
                    &mut since,
                    k,
                    &z,
                    every as u64,
                    &mut scratch,
                );
                axpy(*r, &z, &mut bvec);
            }
            let ids: Vec<String> = rows.iter().map(|(i, _, _)| format!("arm-{i}")).collect();
            let xs: Vec<f64> = rows.iter().flat_map(|(_, x, _)| x.clone()).collect();
            let rs: Vec<f64> = rows.iter().map(|(_, _, r)| *r).collect();
            for bandit in std::iter::once(&mut b).chain(restored.as_mut()) {
                if n_rows == 1 {
                    bandit.update(&ids[0], &xs, rs[0]).expect("update");
                } else {
                    bandit.update_batch(&ids, &xs, &rs).expect("update_batch");
                }
            }
            let sh = b.shared_stats().expect("hybrid");
            assert_eq!(
                bits(&sh.a),
                bits(&a),
                "A_0, every={every} half_life={half_life} t={t}"
            );
            assert_eq!(bits(&sh.a_inv), bits(&a_inv), "A_0⁻¹, t={t}");
            assert_eq!(bits(&sh.b), bits(&bvec), "b_0, t={t}");
            if t == 40 {
                // taken while outer products wait (no refactorization for 1000 updates)
                restored = Some(decode(&encode(&b)).expect("decode"));
            }
            if t == 90 && half_life == 0 {
                // forgetting switched on while outer products wait: they are added before its discount
                for bandit in std::iter::once(&mut b).chain(restored.as_mut()) {
                    bandit.set_half_life(30).expect("half-life");
                }
                forget = Forgetting::new(30, forget.clock);
            }
            if let Some(r) = &restored {
                assert_eq!(encode(r), encode(&b), "restored, t={t}");
            }
        }
    }
}
