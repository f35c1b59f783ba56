//! Which consumers a `canary` rotation gives the new version first.

use sha2::{Digest, Sha256};

use crate::SecretName;

/// Buckets a consumer can fall in: a share is a whole number of percent,
/// so 100 buckets per percent keeps the hash's rounding far below it.
const BUCKETS: u64 = 10_000;

/// Whether `consumer_id` is in the canary share of `secret`: `share` is a
/// percentage (1 to 100; 0 selects nobody).
///
/// The choice is a stable hash of the secret's name and the consumer id,
/// so a consumer stays in (or out of) the share across reads, restarts and
/// server replicas, and one process is not the canary of every secret.
pub fn in_canary(secret: &SecretName, consumer_id: &str, share: u8) -> bool {
    let digest = Sha256::new()
        .chain_update(b"keyshift-canary\0")
        .chain_update(secret.as_str().as_bytes())
        .chain_update([0u8])
        .chain_update(consumer_id.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % BUCKETS < u64::from(share.min(100)) * (BUCKETS / 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> SecretName {
        s.parse().unwrap()
    }

    #[test]
    fn the_share_is_stable_and_close_to_its_percentage() {
        let secret = name("prod/orders/db");
        let ids: Vec<String> = (0..10_000).map(|i| format!("pod-{i}")).collect();
        let chosen = ids.iter().filter(|id| in_canary(&secret, id, 10)).count();
        assert!((800..=1200).contains(&chosen), "10% of 10,000 = {chosen}");
        for id in ids.iter().take(100) {
            assert_eq!(in_canary(&secret, id, 10), in_canary(&secret, id, 10));
            // A larger share keeps everyone a smaller one chose.
            if in_canary(&secret, id, 10) {
                assert!(in_canary(&secret, id, 50));
            }
        }
        assert!(ids.iter().all(|id| in_canary(&secret, id, 100)));
        assert!(!ids.iter().any(|id| in_canary(&secret, id, 0)));
    }

    #[test]
    fn each_secret_draws_its_own_share() {
        let (a, b) = (name("prod/a"), name("prod/b"));
        let differ = (0..1000)
            .map(|i| format!("pod-{i}"))
            .filter(|id| in_canary(&a, id, 50) != in_canary(&b, id, 50))
            .count();
        assert!(differ > 300, "{differ} of 1000 differ");
    }
}
