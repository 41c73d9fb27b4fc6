//! Redis Cluster hash slots: which of the 16,384 slots a key or a shard channel belongs to.
//!
//! The cluster hashes a key's hash tag (the text between its first `{` and the next `}`, when that
//! is not empty) or else the whole key with CRC16 (XMODEM), modulo 16,384. The sharded subscriber
//! needs it to find the node of each channel; the redis crate keeps its own copy private.

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// The hash tag of a key (`{…}`, what the cluster hashes), or the whole key.
#[must_use]
pub fn hash_tag(key: &str) -> &str {
    key.find('{')
        .and_then(|open| {
            let close = key[open + 1..].find('}')?;
            (close > 0).then(|| &key[open + 1..open + 1 + close])
        })
        .unwrap_or(key)
}

/// The slot of a key or shard channel.
#[must_use]
pub fn hash_slot(key: &str) -> u16 {
    crc16(hash_tag(key).as_bytes()) % SLOTS
}

/// CRC16/XMODEM (polynomial 0x1021, initial value 0, no reflection), bit by bit: a slot is
/// computed once per subscription, not per message.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_xmodem() {
        // The check value of CRC-16/XMODEM, and the one the Redis Cluster spec quotes.
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn slots_match_what_redis_computes() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(hash_slot("foo"), 12182);
        assert_eq!(hash_slot("bar"), 5061);
        assert_eq!(hash_slot("{user1000}.following"), hash_slot("user1000"));
        assert_eq!(
            hash_slot("{user1000}.followers"),
            hash_slot("{user1000}.following")
        );
    }

    #[test]
    fn an_empty_or_unclosed_tag_hashes_the_whole_key() {
        assert_eq!(hash_tag("foo{}{bar}"), "foo{}{bar}");
        assert_eq!(hash_tag("foo{bar"), "foo{bar");
        assert_eq!(hash_tag("foo{{bar}}zap"), "{bar");
        assert_eq!(hash_tag("chat:v1:{3}:room:x:seq"), "3");
        assert_eq!(hash_tag("chat:v1:{u:ab}:presence"), "u:ab");
        assert_eq!(hash_tag("plain"), "plain");
    }
}
