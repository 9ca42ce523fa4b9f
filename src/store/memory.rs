//! [`MemoryStore`]: tokens in a map in this process.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, PoisonError, RwLock},
};

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use super::{
    Cursor, Lookup, ManageTokens, Revoked, Rotated, StoreError, StoreErrorKind, TokenStore,
};
use crate::{
    hashers::PrefixState,
    record::{TokenId, TokenRecord, UserId},
    token::TokenHash,
};

/// Tokens in memory: the embedded default, for tests, demos and single-process services
/// that can lose their tokens on restart.
///
/// Safe under concurrent create, revoke, rotate and find: every operation takes one lock
/// once, so a `revoke` that has returned is seen by every later `find`, a rotation is one
/// step, and the per-user cap ([`insert_limited`](ManageTokens::insert_limited)) is
/// counted and kept under the same lock. Answers
/// [`find_ready`](TokenStore::find_ready), so the layer resolves a token with no future at
/// all.
///
/// ```
/// use tower_pat::{MemoryStore, Tokens, scope::ScopeRegistry};
///
/// # tokio_test_block(async {
/// let registry = ScopeRegistry::new().scope("orders:read", "See orders");
/// let tokens = Tokens::new(MemoryStore::<i64>::new(), registry);
/// let created = tokens.create(1, "laptop", ["orders:read"]).await.unwrap();
/// assert_eq!(tokens.list(&1).await.unwrap().len(), 1);
/// # });
/// # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub struct MemoryStore<U = i64> {
    inner: RwLock<Inner<U>>,
}

struct Inner<U> {
    by_hash: HashMap<TokenHash, Arc<TokenRecord<U>>, PrefixState>,
    by_id: HashMap<TokenId, TokenHash>,
    by_user: HashMap<U, Vec<TokenId>>,
    /// The shortest expiry-notice threshold claimed for each token, in seconds.
    notices: HashMap<TokenId, i64>,
}

impl<U> Default for MemoryStore<U> {
    fn default() -> Self {
        Self {
            inner: RwLock::new(Inner {
                by_hash: HashMap::default(),
                by_id: HashMap::new(),
                by_user: HashMap::new(),
                notices: HashMap::new(),
            }),
        }
    }
}

/// Whether a record counts as live for the cap, the expiring list and the notices: not
/// revoked, not rotated, not expired at `now`.
fn is_live<U>(record: &TokenRecord<U>, now: OffsetDateTime) -> bool {
    record.is_active_at(now) && record.rotated_to.is_none()
}

impl<U> fmt::Debug for MemoryStore<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("tokens", &self.len())
            .finish()
    }
}

impl<U> MemoryStore<U> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records it holds, revoked and expired ones included.
    pub fn len(&self) -> usize {
        self.read().by_hash.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A panic while holding the lock cannot leave the maps half-updated (every
    // operation checks before it changes anything), so a poisoned lock is still sound.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner<U>> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<U>> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<U: UserId> MemoryStore<U> {
    fn lookup(&self, hash: &TokenHash) -> Option<Arc<TokenRecord<U>>> {
        self.read().by_hash.get(hash).cloned()
    }
}

impl<U: UserId> Inner<U> {
    fn owned(&mut self, user: &U, id: TokenId) -> Option<&mut Arc<TokenRecord<U>>> {
        let hash = self.by_id.get(&id)?;
        let record = self.by_hash.get_mut(hash)?;
        (record.user_id == *user).then_some(record)
    }

    fn insert(&mut self, record: TokenRecord<U>) -> Result<(), StoreError> {
        if self.by_id.contains_key(&record.id) || self.by_hash.contains_key(&record.token_hash) {
            return Err(StoreError::with_kind(
                StoreErrorKind::Conflict,
                format!("token {} exists already", record.id),
            ));
        }
        self.by_id.insert(record.id, record.token_hash);
        self.by_user
            .entry(record.user_id.clone())
            .or_default()
            .push(record.id);
        self.by_hash.insert(record.token_hash, Arc::new(record));
        Ok(())
    }

    fn remove(&mut self, id: TokenId, hash: &TokenHash, user: &U) {
        self.by_hash.remove(hash);
        self.by_id.remove(&id);
        self.notices.remove(&id);
        if let Some(ids) = self.by_user.get_mut(user) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.by_user.remove(user);
            }
        }
    }

    /// Live records expiring after `now` and at the latest at `until`, soonest first.
    fn expiring(&self, now: OffsetDateTime, until: OffsetDateTime) -> Vec<&Arc<TokenRecord<U>>> {
        let mut out: Vec<_> = self
            .by_hash
            .values()
            .filter(|r| is_live(r, now) && r.expires_at <= until)
            .collect();
        out.sort_by_key(|r| (r.expires_at, r.id));
        out
    }
}

#[async_trait]
impl<U: UserId> TokenStore for MemoryStore<U> {
    type UserId = U;

    async fn find(&self, hash: &TokenHash) -> Lookup<U> {
        Ok(self.lookup(hash))
    }

    fn find_ready(&self, hash: &TokenHash) -> Option<Lookup<U>> {
        Some(Ok(self.lookup(hash)))
    }

    async fn touch(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        let mut inner = self.write();
        let Inner { by_hash, by_id, .. } = &mut *inner;
        for &(id, at) in uses {
            let Some(record) = by_id.get(&id).and_then(|hash| by_hash.get_mut(hash)) else {
                continue;
            };
            // Instances with slightly different clocks never move it backwards.
            if record.last_used_at.is_none_or(|last| last < at) {
                Arc::make_mut(record).last_used_at = Some(at);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl<U: UserId> ManageTokens for MemoryStore<U> {
    async fn insert(&self, record: TokenRecord<U>) -> Result<(), StoreError> {
        self.write().insert(record)
    }

    async fn get(&self, id: TokenId) -> Result<Option<TokenRecord<U>>, StoreError> {
        let inner = self.read();
        Ok(inner
            .by_id
            .get(&id)
            .and_then(|h| inner.by_hash.get(h))
            .map(|r| TokenRecord::clone(r)))
    }

    async fn list(&self, user: &U) -> Result<Vec<TokenRecord<U>>, StoreError> {
        let inner = self.read();
        let mut out: Vec<TokenRecord<U>> = inner
            .by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.by_id.get(id))
            .filter_map(|h| inner.by_hash.get(h))
            .map(|r| TokenRecord::clone(r))
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
        Ok(out)
    }

    async fn revoke(
        &self,
        user: &U,
        id: TokenId,
        at: OffsetDateTime,
    ) -> Result<Revoked, StoreError> {
        let mut inner = self.write();
        Ok(match inner.owned(user, id) {
            None => Revoked::NotFound,
            Some(record) if record.revoked => Revoked::AlreadyRevoked,
            Some(record) => {
                let record = Arc::make_mut(record);
                record.revoked = true;
                record.updated_at = at;
                Revoked::Revoked
            }
        })
    }

    async fn revoke_all(&self, user: &U, at: OffsetDateTime) -> Result<u64, StoreError> {
        let mut inner = self.write();
        let Inner {
            by_hash,
            by_id,
            by_user,
            ..
        } = &mut *inner;
        let mut changed = 0;
        for id in by_user.get(user).into_iter().flatten() {
            let Some(record) = by_id.get(id).and_then(|h| by_hash.get_mut(h)) else {
                continue;
            };
            if !record.revoked {
                let record = Arc::make_mut(record);
                record.revoked = true;
                record.updated_at = at;
                changed += 1;
            }
        }
        Ok(changed)
    }

    async fn delete(&self, user: &U, id: TokenId) -> Result<bool, StoreError> {
        let mut inner = self.write();
        let Some(hash) = inner.owned(user, id).map(|r| r.token_hash) else {
            return Ok(false);
        };
        inner.remove(id, &hash, user);
        Ok(true)
    }

    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut inner = self.write();
        let doomed: Vec<(TokenId, TokenHash, U)> = inner
            .by_hash
            .values()
            .filter(|r| r.expires_at < before || (r.revoked && r.updated_at < before))
            .map(|r| (r.id, r.token_hash, r.user_id.clone()))
            .collect();
        for (id, hash, user) in &doomed {
            inner.remove(*id, hash, user);
        }
        Ok(doomed.len() as u64)
    }

    async fn list_page(
        &self,
        user: &U,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<TokenRecord<U>>, StoreError> {
        let inner = self.read();
        let mut out: Vec<&Arc<TokenRecord<U>>> = inner
            .by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.by_id.get(id))
            .filter_map(|h| inner.by_hash.get(h))
            .filter(|r| after.is_none_or(|c| (r.created_at, r.id) < (c.at(), c.id())))
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
        Ok(out
            .into_iter()
            .take(limit as usize)
            .map(|r| TokenRecord::clone(r))
            .collect())
    }

    async fn insert_limited(
        &self,
        record: TokenRecord<U>,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut inner = self.write();
        let live = inner
            .by_user
            .get(&record.user_id)
            .into_iter()
            .flatten()
            .filter_map(|id| inner.by_id.get(id))
            .filter_map(|h| inner.by_hash.get(h))
            .filter(|r| is_live(r, now))
            .count();
        if live >= limit as usize {
            return Ok(false);
        }
        inner.insert(record)?;
        Ok(true)
    }

    async fn rotate(
        &self,
        user: &U,
        id: TokenId,
        successor: TokenRecord<U>,
        old_expires_at: OffsetDateTime,
        at: OffsetDateTime,
    ) -> Result<Rotated<U>, StoreError> {
        let mut inner = self.write();
        let old = match inner.owned(user, id) {
            None => return Ok(Rotated::NotFound),
            Some(old) => match old.rotated_to {
                Some(successor) => return Ok(Rotated::AlreadyRotated(successor)),
                None if !old.is_active_at(at) => return Ok(Rotated::Inactive),
                None => TokenRecord::clone(old),
            },
        };
        // Checked before anything changes: a conflicting successor leaves the old alone.
        inner.insert(successor.clone())?;
        let mut rotated = old;
        rotated.rotated_to = Some(successor.id);
        rotated.expires_at = rotated.expires_at.min(old_expires_at);
        if old_expires_at <= at {
            rotated.revoked = true;
        }
        rotated.updated_at = at;
        if let Some(slot) = inner.owned(user, id) {
            *slot = Arc::new(rotated.clone());
        }
        Ok(Rotated::Rotated(rotated))
    }

    async fn expiring(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<TokenRecord<U>>, StoreError> {
        let inner = self.read();
        Ok(inner
            .expiring(now, until)
            .into_iter()
            .filter(|r| after.is_none_or(|c| (r.expires_at, r.id) > (c.at(), c.id())))
            .take(limit as usize)
            .map(|r| TokenRecord::clone(r))
            .collect())
    }

    async fn claim_expiry_notices(
        &self,
        within: Duration,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TokenRecord<U>>, StoreError> {
        let threshold = within.whole_seconds();
        let mut inner = self.write();
        let claimed: Vec<TokenRecord<U>> = inner
            .expiring(now, now + within)
            .into_iter()
            .filter(|r| inner.notices.get(&r.id).is_none_or(|n| *n > threshold))
            .take(limit as usize)
            .map(|r| TokenRecord::clone(r))
            .collect();
        for record in &claimed {
            inner.notices.insert(record.id, threshold);
        }
        Ok(claimed)
    }
}
