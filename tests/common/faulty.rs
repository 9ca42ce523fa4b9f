//! The fault-injecting [`TokenStore`] of the tests: wraps a real store and, call by call,
//! answers as the store would, fails, times out, hangs, answers slowly, or answers with
//! data that does not fit the question. It counts the lookups and `touch` calls that
//! reach it.
//!
//! By default it answers `find_ready` too (as the wrapped store does, with the planned
//! fault), so the layer's synchronous path is exercised; [`Faulty::async_only`] makes it
//! decline, so the layer takes its asynchronous path (the one a database store takes) and
//! the store timeout applies. A fault that takes time (hang, slow) always goes the
//! asynchronous way.

#![allow(dead_code)]

use std::{
    collections::VecDeque,
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use time::OffsetDateTime;
use tower_pat::{
    ManageTokens, TokenStore, async_trait,
    record::{TokenId, TokenRecord},
    store::{Lookup, Revoked, StoreError, StoreErrorKind},
    token::TokenHash,
};

/// What one call does.
#[derive(Clone, Debug)]
pub enum Fault<U = i64> {
    /// Answers as the wrapped store does.
    Pass,
    /// Answers with a backend error.
    Fail,
    /// Answers with a timeout error.
    Timeout,
    /// Answers with a "row cannot be read" error.
    Corrupt,
    /// Never answers.
    Hang,
    /// Waits this long, then answers as the wrapped store does.
    Slow(Duration),
    /// Answers with the wrapped store's record, its `token_hash` changed to another hash.
    WrongHash,
    /// Answers with this record, whatever was asked.
    Record(Arc<TokenRecord<U>>),
    /// Answers "no such token", whatever was asked.
    Missing,
}

impl<U> Fault<U> {
    /// A short name, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Timeout => "timeout",
            Self::Corrupt => "corrupt",
            Self::Hang => "hang",
            Self::Slow(_) => "slow",
            Self::WrongHash => "wrong-hash",
            Self::Record(_) => "other-record",
            Self::Missing => "missing",
        }
    }

    fn takes_time(&self) -> bool {
        matches!(self, Self::Hang | Self::Slow(_))
    }
}

type ByCall<U> = Box<dyn FnMut(usize) -> Fault<U> + Send>;

/// Which fault each call gets.
enum Plan<U> {
    /// Takes the next fault of the queue; once empty, `then` for every call.
    Queue {
        queue: VecDeque<Fault<U>>,
        then: Fault<U>,
    },
    /// Asks a function of the call number (from 0).
    ByCall(ByCall<U>),
}

impl<U: Clone> Plan<U> {
    fn pass() -> Self {
        Self::Queue {
            queue: VecDeque::new(),
            then: Fault::Pass,
        }
    }

    fn next(&mut self, call: usize) -> Fault<U> {
        match self {
            Self::Queue { queue, then } => queue.pop_front().unwrap_or_else(|| then.clone()),
            Self::ByCall(f) => f(call),
        }
    }

    /// Puts a fault back, for the next call.
    fn put_back(&mut self, fault: Fault<U>) {
        if let Self::Queue { queue, .. } = self {
            queue.push_front(fault);
        }
    }
}

/// Wraps a store and injects faults into `find` / `find_ready` (and, separately, `touch`).
pub struct Faulty<S: TokenStore> {
    inner: S,
    find_plan: Mutex<Plan<S::UserId>>,
    touch_plan: Mutex<Plan<S::UserId>>,
    find_calls: AtomicUsize,
    touch_calls: AtomicUsize,
    touched: AtomicUsize,
    async_only: AtomicBool,
    applied: Mutex<Vec<&'static str>>,
}

impl<S: TokenStore> fmt::Debug for Faulty<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faulty")
            .field("find_calls", &self.find_calls())
            .field("touch_calls", &self.touch_calls())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S: TokenStore> Faulty<S> {
    /// A wrapper that passes every call through until told otherwise.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            find_plan: Mutex::new(Plan::pass()),
            touch_plan: Mutex::new(Plan::pass()),
            find_calls: AtomicUsize::new(0),
            touch_calls: AtomicUsize::new(0),
            touched: AtomicUsize::new(0),
            async_only: AtomicBool::new(false),
            applied: Mutex::new(Vec::new()),
        }
    }

    /// Declines `find_ready` from now on (or answers it again), so that the layer takes
    /// its asynchronous path.
    pub fn async_only(&self, on: bool) -> &Self {
        self.async_only.store(on, Ordering::SeqCst);
        self
    }

    /// The next lookups get `faults`, one each, then every lookup gets `then`.
    pub fn schedule(
        &self,
        faults: impl IntoIterator<Item = Fault<S::UserId>>,
        then: Fault<S::UserId>,
    ) {
        *lock(&self.find_plan) = Plan::Queue {
            queue: faults.into_iter().collect(),
            then,
        };
    }

    /// Every lookup gets `fault` from now on.
    pub fn set(&self, fault: Fault<S::UserId>) {
        self.schedule([], fault);
    }

    /// Each lookup gets what `plan` says for its number (counted from 0, over the store's
    /// whole life).
    pub fn by_call(&self, plan: impl FnMut(usize) -> Fault<S::UserId> + Send + 'static) {
        *lock(&self.find_plan) = Plan::ByCall(Box::new(plan));
    }

    /// The next `touch` calls get `faults`, then `then`.
    pub fn schedule_touch(
        &self,
        faults: impl IntoIterator<Item = Fault<S::UserId>>,
        then: Fault<S::UserId>,
    ) {
        *lock(&self.touch_plan) = Plan::Queue {
            queue: faults.into_iter().collect(),
            then,
        };
    }

    /// How many lookups (`find`, or a `find_ready` that answered) reached the store.
    pub fn find_calls(&self) -> usize {
        self.find_calls.load(Ordering::SeqCst)
    }

    /// How many times `touch` was called.
    pub fn touch_calls(&self) -> usize {
        self.touch_calls.load(Ordering::SeqCst)
    }

    /// How many uses `touch` was handed in all.
    pub fn uses_touched(&self) -> usize {
        self.touched.load(Ordering::SeqCst)
    }

    /// The faults lookups applied, in call order.
    pub fn applied(&self) -> Vec<&'static str> {
        lock(&self.applied).clone()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn next_lookup(&self) -> Fault<S::UserId> {
        let call = self.find_calls.fetch_add(1, Ordering::SeqCst);
        let fault = lock(&self.find_plan).next(call);
        lock(&self.applied).push(fault.name());
        fault
    }

    /// The answer of a fault that takes no time.
    fn answer_now(&self, fault: Fault<S::UserId>, passed: Lookup<S::UserId>) -> Lookup<S::UserId> {
        match fault {
            Fault::Pass | Fault::Hang | Fault::Slow(_) => passed,
            Fault::Fail => Err(injected("connection reset")),
            Fault::Timeout => Err(StoreError::timeout()),
            Fault::Corrupt => Err(StoreError::with_kind(
                StoreErrorKind::Corrupt,
                "injected fault: unreadable row",
            )),
            Fault::WrongHash => Ok(passed?.map(|r| {
                let mut r = TokenRecord::clone(&r);
                r.token_hash = other_hash();
                Arc::new(r)
            })),
            Fault::Record(r) => Ok(Some(r)),
            Fault::Missing => Ok(None),
        }
    }
}

/// A hash no token has (its bytes are all `0xA5`).
pub fn other_hash() -> TokenHash {
    TokenHash::from_bytes([0xA5; 32])
}

fn injected(what: &str) -> StoreError {
    StoreError::new(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        format!("injected fault: {what}"),
    ))
}

#[async_trait]
impl<S: TokenStore> TokenStore for Faulty<S> {
    type UserId = S::UserId;

    async fn find(&self, hash: &TokenHash) -> Lookup<S::UserId> {
        let fault = self.next_lookup();
        match fault {
            Fault::Hang => std::future::pending().await,
            Fault::Slow(d) => {
                tokio::time::sleep(d).await;
                self.inner.find(hash).await
            }
            fault => {
                let passed = self.inner.find(hash).await;
                self.answer_now(fault, passed)
            }
        }
    }

    fn find_ready(&self, hash: &TokenHash) -> Option<Lookup<S::UserId>> {
        if self.async_only.load(Ordering::SeqCst) {
            return None;
        }
        let passed = self.inner.find_ready(hash)?;
        let call = self.find_calls.fetch_add(1, Ordering::SeqCst);
        let mut plan = lock(&self.find_plan);
        let fault = plan.next(call);
        if fault.takes_time() {
            // `find` will take it: this lookup has not happened yet.
            plan.put_back(fault);
            self.find_calls.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        drop(plan);
        lock(&self.applied).push(fault.name());
        Some(self.answer_now(fault, passed))
    }

    async fn touch(&self, uses: &[(TokenId, OffsetDateTime)]) -> Result<(), StoreError> {
        let call = self.touch_calls.fetch_add(1, Ordering::SeqCst);
        self.touched.fetch_add(uses.len(), Ordering::SeqCst);
        let fault = lock(&self.touch_plan).next(call);
        match fault {
            Fault::Fail | Fault::Corrupt | Fault::Timeout => Err(injected("touch failed")),
            Fault::Hang => std::future::pending().await,
            Fault::Slow(d) => {
                tokio::time::sleep(d).await;
                self.inner.touch(uses).await
            }
            _ => self.inner.touch(uses).await,
        }
    }
}

#[async_trait]
impl<S: ManageTokens> ManageTokens for Faulty<S> {
    async fn insert(&self, record: TokenRecord<Self::UserId>) -> Result<(), StoreError> {
        self.inner.insert(record).await
    }

    async fn get(&self, id: TokenId) -> Result<Option<TokenRecord<Self::UserId>>, StoreError> {
        self.inner.get(id).await
    }

    async fn list(
        &self,
        user: &Self::UserId,
    ) -> Result<Vec<TokenRecord<Self::UserId>>, StoreError> {
        self.inner.list(user).await
    }

    async fn revoke(
        &self,
        user: &Self::UserId,
        id: TokenId,
        at: OffsetDateTime,
    ) -> Result<Revoked, StoreError> {
        self.inner.revoke(user, id, at).await
    }

    async fn revoke_all(&self, user: &Self::UserId, at: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.revoke_all(user, at).await
    }

    async fn delete(&self, user: &Self::UserId, id: TokenId) -> Result<bool, StoreError> {
        self.inner.delete(user, id).await
    }

    async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.prune(before).await
    }

    async fn list_page(
        &self,
        user: &Self::UserId,
        after: Option<&tower_pat::store::Cursor>,
        limit: u32,
    ) -> Result<Vec<TokenRecord<Self::UserId>>, StoreError> {
        self.inner.list_page(user, after, limit).await
    }

    async fn insert_limited(
        &self,
        record: TokenRecord<Self::UserId>,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.inner.insert_limited(record, limit, now).await
    }

    async fn rotate(
        &self,
        user: &Self::UserId,
        id: TokenId,
        successor: TokenRecord<Self::UserId>,
        old_expires_at: OffsetDateTime,
        at: OffsetDateTime,
    ) -> Result<tower_pat::store::Rotated<Self::UserId>, StoreError> {
        self.inner
            .rotate(user, id, successor, old_expires_at, at)
            .await
    }

    async fn expiring(
        &self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        after: Option<&tower_pat::store::Cursor>,
        limit: u32,
    ) -> Result<Vec<TokenRecord<Self::UserId>>, StoreError> {
        self.inner.expiring(now, until, after, limit).await
    }

    async fn claim_expiry_notices(
        &self,
        within: time::Duration,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<TokenRecord<Self::UserId>>, StoreError> {
        self.inner.claim_expiry_notices(within, now, limit).await
    }
}
