//! A fault-injecting [`TokenStore`] for tests: wraps a real store and, call by call,
//! answers as the store would, fails, hangs, answers slowly, or answers with data that
//! does not fit the question.
//!
//! `find_now` always says "ask `find`", so the layer takes its asynchronous path (the one
//! a database store takes) and the store timeout applies.

#![allow(dead_code)]

use std::{
    collections::VecDeque,
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_pat::{
    TokenStore,
    record::{TokenId, TokenRecord},
    store::{Found, StoreError, StoreErrorKind},
    token::TokenHash,
};

/// What one call does.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answers as the wrapped store does.
    Pass,
    /// Answers with a backend error.
    Fail,
    /// Answers with a "row cannot be read" error.
    Corrupt,
    /// Never answers.
    Hang,
    /// Waits this long, then answers as the wrapped store does.
    Slow(Duration),
    /// Answers with the wrapped store's record, its `token_hash` changed to another hash.
    WrongHash,
    /// Answers with this record, whatever was asked.
    Record(Arc<TokenRecord<i64>>),
    /// Answers "no such token", whatever was asked.
    Missing,
}

impl Fault {
    /// A short name, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Corrupt => "corrupt",
            Self::Hang => "hang",
            Self::Slow(_) => "slow",
            Self::WrongHash => "wrong-hash",
            Self::Record(_) => "other-record",
            Self::Missing => "missing",
        }
    }
}

type ByCall = Box<dyn FnMut(usize) -> Fault + Send>;

/// Which fault each call gets.
enum Plan {
    /// Takes the next fault of the queue; once empty, `then` for every call.
    Queue { queue: VecDeque<Fault>, then: Fault },
    /// Asks a function of the call number (from 0).
    ByCall(ByCall),
}

impl Plan {
    fn next(&mut self, call: usize) -> Fault {
        match self {
            Self::Queue { queue, then } => queue.pop_front().unwrap_or_else(|| then.clone()),
            Self::ByCall(f) => f(call),
        }
    }
}

/// Wraps a store and injects faults into `find` (and, separately, `touch`).
pub struct Faulty<S> {
    inner: S,
    find_plan: Mutex<Plan>,
    touch_plan: Mutex<Plan>,
    find_calls: AtomicUsize,
    touch_calls: AtomicUsize,
    applied: Mutex<Vec<&'static str>>,
}

impl<S> fmt::Debug for Faulty<S> {
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

impl<S> Faulty<S> {
    /// A wrapper that passes every call through until told otherwise.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            find_plan: Mutex::new(Plan::Queue {
                queue: VecDeque::new(),
                then: Fault::Pass,
            }),
            touch_plan: Mutex::new(Plan::Queue {
                queue: VecDeque::new(),
                then: Fault::Pass,
            }),
            find_calls: AtomicUsize::new(0),
            touch_calls: AtomicUsize::new(0),
            applied: Mutex::new(Vec::new()),
        }
    }

    /// The next `find` calls get `faults`, one each, then every call gets `then`.
    pub fn schedule(&self, faults: impl IntoIterator<Item = Fault>, then: Fault) {
        *lock(&self.find_plan) = Plan::Queue {
            queue: faults.into_iter().collect(),
            then,
        };
    }

    /// Every `find` call gets `fault` from now on.
    pub fn set(&self, fault: Fault) {
        self.schedule([], fault);
    }

    /// Each `find` call gets what `plan` says for its number (counted from 0, over the
    /// store's whole life).
    pub fn by_call(&self, plan: impl FnMut(usize) -> Fault + Send + 'static) {
        *lock(&self.find_plan) = Plan::ByCall(Box::new(plan));
    }

    /// The next `touch` calls get `faults`, then `then`.
    pub fn schedule_touch(&self, faults: impl IntoIterator<Item = Fault>, then: Fault) {
        *lock(&self.touch_plan) = Plan::Queue {
            queue: faults.into_iter().collect(),
            then,
        };
    }

    /// How many times `find` was called.
    pub fn find_calls(&self) -> usize {
        self.find_calls.load(Ordering::SeqCst)
    }

    /// How many times `touch` was called.
    pub fn touch_calls(&self) -> usize {
        self.touch_calls.load(Ordering::SeqCst)
    }

    /// The faults `find` applied, in call order.
    pub fn applied(&self) -> Vec<&'static str> {
        lock(&self.applied).clone()
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
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
impl<S: TokenStore<UserId = i64>> TokenStore for Faulty<S> {
    type UserId = i64;

    async fn find(&self, hash: &TokenHash) -> Result<Found<i64>, StoreError> {
        let call = self.find_calls.fetch_add(1, Ordering::SeqCst);
        let fault = lock(&self.find_plan).next(call);
        lock(&self.applied).push(fault.name());
        match fault {
            Fault::Pass => self.inner.find(hash).await,
            Fault::Fail => Err(injected("connection reset")),
            Fault::Corrupt => Err(StoreError::with_kind(
                StoreErrorKind::Corrupt,
                "injected fault: unreadable row",
            )),
            Fault::Hang => std::future::pending().await,
            Fault::Slow(d) => {
                tokio::time::sleep(d).await;
                self.inner.find(hash).await
            }
            Fault::WrongHash => Ok(self.inner.find(hash).await?.map(|r| {
                let mut r = TokenRecord::clone(&r);
                r.token_hash = other_hash();
                Arc::new(r)
            })),
            Fault::Record(r) => Ok(Some(r)),
            Fault::Missing => Ok(None),
        }
    }

    fn find_now(&self, _: &TokenHash) -> Option<Result<Found<i64>, StoreError>> {
        None
    }

    async fn touch(&self, id: TokenId, at: OffsetDateTime) -> Result<(), StoreError> {
        let call = self.touch_calls.fetch_add(1, Ordering::SeqCst);
        let fault = lock(&self.touch_plan).next(call);
        match fault {
            Fault::Fail | Fault::Corrupt => Err(injected("touch failed")),
            Fault::Hang => std::future::pending().await,
            Fault::Slow(d) => {
                tokio::time::sleep(d).await;
                self.inner.touch(id, at).await
            }
            _ => self.inner.touch(id, at).await,
        }
    }
}
