//! A short-lived cache of memberships, so the send path does not ask MySQL for every message. Entries
//! live `TTL`; control messages from the API (join, leave, kick, role change, room deletion) drop them
//! at once on every gateway. A MySQL read that started before an invalidation is not cached (a
//! generation counter, bumped by every invalidation, tells), so a kick cannot be undone by a lookup
//! that was already in flight.

use chat_store::{Membership, Store, StoreResult};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

const TTL: Duration = Duration::from_secs(60);
/// Past this many entries the cache is emptied (a crude bound; entries are cheap to refill).
const MAX_ENTRIES: usize = 200_000;

type Entries = HashMap<(Uuid, Uuid), (Option<Membership>, Instant)>;

#[derive(Default)]
pub struct MemberCache {
    map: Mutex<Entries>,
    /// Bumped by every invalidation.
    generation: AtomicU64,
}

impl MemberCache {
    /// `user`'s membership of `room`, from the cache or MySQL.
    ///
    /// # Errors
    /// MySQL failures.
    pub async fn get(
        &self,
        store: &Store,
        room: Uuid,
        user: Uuid,
    ) -> StoreResult<Option<Membership>> {
        if let Some((m, at)) = self.lock().get(&(room, user)) {
            if at.elapsed() < TTL {
                return Ok(m.clone());
            }
        }
        let generation = self.generation.load(Ordering::Acquire);
        let m = store.membership(room, user).await?;
        let mut map = self.lock();
        // Invalidations happen under the lock too: unchanged here means none since the read began.
        if self.generation.load(Ordering::Acquire) == generation {
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
            map.insert((room, user), (m.clone(), Instant::now()));
        }
        Ok(m)
    }

    pub fn invalidate(&self, room: Uuid, user: Uuid) {
        let mut map = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.remove(&(room, user));
    }

    pub fn invalidate_room(&self, room: Uuid) {
        let mut map = self.lock();
        self.generation.fetch_add(1, Ordering::AcqRel);
        map.retain(|(r, _), _| *r != room);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
