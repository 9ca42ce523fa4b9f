//! What the crate counts, through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): the application installs the exporter it wants (Prometheus, StatsD, …), as
//! for any crate that speaks the facade. Without the feature nothing is counted and
//! nothing is paid.
//!
//! | name | type | labels | what it counts |
//! |---|---|---|---|
//! | `tower_pat_requests_total` | counter | `outcome`: `accepted`, `anonymous`, or a [rejection code](crate::reject::RejectionKind::code) | requests a [`PatLayer`](crate::PatLayer) decided on: admitted with a token, let through without one (an [`optional`](crate::PatLayer::optional) layer), or refused |
//! | `tower_pat_scope_refusals_total` | counter | `code`: `insufficient_scope`, `missing_credentials`, `missing_layer` | requests a scope check (`RequireScopesLayer`, `ScopeMapLayer`) refused |
//! | `tower_pat_store_lookups_total` | counter | `result`: `found`, `not_found`, `error` | tokens a layer asked its store for (`error`: the store failed or timed out) |
//! | `tower_pat_store_lookup_duration_seconds` | histogram | — | how long a request waited for a store that could not answer at once (a database; a cache miss) |
//! | `tower_pat_cache_lookups_total` | counter | `result`: `hit`, `negative_hit`, `miss` | what a [`CachedStore`](crate::store::CachedStore) knew of a token asked for: its record, that no record has it, or nothing (the store is asked) |
//! | `tower_pat_cache_evictions_total` | counter | `reason`: `revoked`, `pruned`, `cleared` | records a cache dropped because they changed: revoked, rotated or deleted (through the cache, or heard from a bus), pruned, or everything cleared (a bus paused the cache). Records that reach their TTL or leave for room are not counted |
//! | `tower_pat_cache_entries` | gauge | `cache`: `positive`, `negative` | entries a cache holds (records; unknown hashes) as the cache counts them, set when it stores one (the count catches up with the cache's housekeeping) and zero when it is cleared |
//! | `tower_pat_listener_losses_total` | counter | `bus`: `postgres`, `redis`, `poller` | times a revocation listener lost its connection or went silent past its bound, or a change poller (SQLite, MySQL) began failing to read its change table: the cache is paused until it listens or reads again |
//! | `tower_pat_last_used_flushes_total` | counter | `result`: `ok`, `error` | batches of uses written back (`last_used_at`) in one `touch` call |
//! | `tower_pat_last_used_uses_total` | counter | — | uses those batches wrote |
//! | `tower_pat_token_changes_total` | counter | `change`: `created`, `rotated`, `revoked`, `deleted`, `pruned` | tokens the lifecycle changed (a `revoke_all` counts each token it revoked, a prune each token it deleted) |
//!
//! No label ever holds a token, a hash, a token id or a user id: every label has the few
//! values listed, so the number of series stays fixed.
//!
//! # Install the recorder first
//!
//! A layer (with the scope checks behind it) and a cache take their counters from the
//! recorder installed when they are built, so that a request pays one atomic add per
//! counter and allocates nothing: install the exporter before building them. (Looking a
//! counter up by name on every request, as the facade's macros do, allocates with the
//! Prometheus exporter.) The rare events, token changes, written uses and listener
//! losses, are counted through whichever recorder is installed when they happen.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_pat::{MemoryStore, PatLayer};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! // An application installs it for the whole process, first thing:
//! // `PrometheusBuilder::new().install_recorder()`. Here, for this thread only.
//! let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
//! let prometheus = recorder.handle();
//! let svc = metrics::with_local_recorder(&recorder, || {
//!     ServiceBuilder::new()
//!         .layer(PatLayer::new(MemoryStore::<i64>::new()))
//!         .service(service_fn(|_: Request<String>| async {
//!             Ok::<_, Infallible>(Response::new(String::new()))
//!         }))
//! });
//!
//! let res = svc.oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! let text = prometheus.render();
//! assert!(text.contains(r#"tower_pat_requests_total{outcome="missing_credentials"} 1"#));
//! # });
//! ```

#[cfg(all(feature = "metrics", feature = "cache"))]
use ::metrics::Gauge;
#[cfg(feature = "metrics")]
use ::metrics::{Counter, Histogram};

use crate::reject::RejectionKind;

/// Stand-ins for the facade's handles without the feature: nothing, and no code.
#[cfg(not(feature = "metrics"))]
mod off {
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Counter;
    #[cfg(feature = "cache")]
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Gauge;
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct Histogram;

    impl Counter {
        #[inline(always)]
        pub(crate) fn increment(&self, _: u64) {}
    }

    #[cfg(feature = "cache")]
    impl Gauge {
        #[inline(always)]
        pub(crate) fn set(&self, _: f64) {}
    }
}
#[cfg(all(not(feature = "metrics"), feature = "cache"))]
use off::Gauge;
#[cfg(not(feature = "metrics"))]
use off::{Counter, Histogram};

/// A counter of the current recorder (the thread's local one, else the global one).
#[cfg(feature = "metrics")]
fn counter(name: &'static str, labels: &[(&'static str, &'static str)]) -> Counter {
    ::metrics::counter!(name, labels)
}

#[cfg(not(feature = "metrics"))]
#[inline(always)]
fn counter(_: &'static str, _: &[(&'static str, &'static str)]) -> Counter {
    Counter
}

#[cfg(all(feature = "metrics", feature = "cache"))]
fn gauge(name: &'static str, labels: &[(&'static str, &'static str)]) -> Gauge {
    ::metrics::gauge!(name, labels)
}

#[cfg(all(not(feature = "metrics"), feature = "cache"))]
#[inline(always)]
fn gauge(_: &'static str, _: &[(&'static str, &'static str)]) -> Gauge {
    Gauge
}

#[cfg(feature = "metrics")]
fn histogram(name: &'static str) -> Histogram {
    ::metrics::histogram!(name)
}

#[cfg(not(feature = "metrics"))]
#[inline(always)]
fn histogram(_: &'static str) -> Histogram {
    Histogram
}

/// When a store lookup began (nothing without the feature).
#[derive(Clone, Copy)]
pub(crate) struct Started(#[cfg(feature = "metrics")] std::time::Instant);

impl Started {
    #[inline(always)]
    pub(crate) fn now() -> Self {
        Self(
            #[cfg(feature = "metrics")]
            std::time::Instant::now(),
        )
    }
}

const LOOKUP_RESULTS: [&str; 3] = ["found", "not_found", "error"];

/// Every rejection, in declaration order: a kind's counter is at `kind as usize`.
const KINDS: [RejectionKind; 10] = [
    RejectionKind::MissingCredentials,
    RejectionKind::InvalidRequest,
    RejectionKind::MalformedToken,
    RejectionKind::UnknownToken,
    RejectionKind::RevokedToken,
    RejectionKind::ExpiredToken,
    RejectionKind::IdleToken,
    RejectionKind::InsufficientScope,
    RejectionKind::StoreUnavailable,
    RejectionKind::MissingLayer,
];

/// The counters of one layer's requests, registered when the layer makes its service.
pub(crate) struct RequestMetrics {
    accepted: Counter,
    anonymous: Counter,
    /// By [`RejectionKind`], in declaration order.
    refused: [Counter; KINDS.len()],
    /// By [`LOOKUP_RESULTS`].
    lookups: [Counter; 3],
    waited: Histogram,
}

impl RequestMetrics {
    pub(crate) fn new() -> Self {
        describe();
        let outcome = |code| counter("tower_pat_requests_total", &[("outcome", code)]);
        Self {
            accepted: outcome("accepted"),
            anonymous: outcome("anonymous"),
            refused: KINDS.map(|kind| outcome(kind.code())),
            lookups: LOOKUP_RESULTS
                .map(|result| counter("tower_pat_store_lookups_total", &[("result", result)])),
            waited: histogram("tower_pat_store_lookup_duration_seconds"),
        }
    }

    #[inline]
    pub(crate) fn accepted(&self) {
        self.accepted.increment(1);
    }

    #[inline]
    pub(crate) fn anonymous(&self) {
        self.anonymous.increment(1);
    }

    #[inline]
    pub(crate) fn refused(&self, kind: RejectionKind) {
        if let Some(counter) = self.refused.get(kind as usize) {
            counter.increment(1);
        }
    }

    /// A store's answer to a layer: `Ok(Some)`, `Ok(None)` or `Err`.
    #[inline]
    pub(crate) fn looked_up<T, E>(&self, found: &Result<Option<T>, E>) {
        let at = match found {
            Ok(Some(_)) => 0,
            Ok(None) => 1,
            Err(_) => 2,
        };
        self.lookups[at].increment(1);
    }

    /// A lookup the request waited for, begun at `started`.
    #[inline]
    pub(crate) fn waited(&self, started: Started) {
        #[cfg(feature = "metrics")]
        self.waited.record(started.0.elapsed().as_secs_f64());
        #[cfg(not(feature = "metrics"))]
        let _ = (started, &self.waited);
    }
}

/// The counters of the scope checks behind one layer (kept in its settings, which every
/// admitted request carries).
#[derive(Debug)]
pub(crate) struct ScopeMetrics {
    insufficient: Counter,
    missing_credentials: Counter,
}

impl ScopeMetrics {
    pub(crate) fn new() -> Self {
        let code = |code| counter("tower_pat_scope_refusals_total", &[("code", code)]);
        Self {
            insufficient: code(RejectionKind::InsufficientScope.code()),
            missing_credentials: code(RejectionKind::MissingCredentials.code()),
        }
    }

    /// A refusal by a scope check, counted by `counters` (a layer's), or through the
    /// current recorder for a token from [`AccessToken::new`](crate::AccessToken::new).
    #[inline]
    pub(crate) fn refused(counters: Option<&Self>, kind: RejectionKind) {
        match counters {
            Some(counters) => match kind {
                RejectionKind::MissingCredentials => counters.missing_credentials.increment(1),
                _ => counters.insufficient.increment(1),
            },
            None => {
                counter("tower_pat_scope_refusals_total", &[("code", kind.code())]).increment(1)
            }
        }
    }
}

/// A scope check with no layer in front of it: a wiring error, counted through the
/// current recorder.
#[inline]
pub(crate) fn scope_without_layer() {
    counter(
        "tower_pat_scope_refusals_total",
        &[("code", RejectionKind::MissingLayer.code())],
    )
    .increment(1);
}

/// Why records left a cache (moka's own expiry and size evictions are not heard).
#[cfg(feature = "cache")]
#[derive(Clone, Copy)]
pub(crate) enum Eviction {
    /// Revoked, rotated or deleted (through the cache, or heard from a bus).
    Revoked,
    /// Pruned.
    Pruned,
    /// Everything cleared: a bus paused the cache, or could not read a message.
    Cleared,
}

/// The counters of one [`CachedStore`](crate::store::CachedStore), registered when it is
/// built.
#[cfg(feature = "cache")]
pub(crate) struct CacheMetrics {
    hit: Counter,
    negative_hit: Counter,
    miss: Counter,
    /// By [`Eviction`].
    evicted: [Counter; 3],
    entries: Gauge,
    negative_entries: Gauge,
}

#[cfg(feature = "cache")]
impl CacheMetrics {
    pub(crate) fn new() -> Self {
        describe();
        let result = |result| counter("tower_pat_cache_lookups_total", &[("result", result)]);
        let entries = |cache| gauge("tower_pat_cache_entries", &[("cache", cache)]);
        Self {
            hit: result("hit"),
            negative_hit: result("negative_hit"),
            miss: result("miss"),
            evicted: ["revoked", "pruned", "cleared"]
                .map(|reason| counter("tower_pat_cache_evictions_total", &[("reason", reason)])),
            entries: entries("positive"),
            negative_entries: entries("negative"),
        }
    }

    /// What the cache knew: a record, that there is none, or nothing.
    #[inline]
    pub(crate) fn cached<T>(&self, found: &Option<Option<T>>) {
        match found {
            Some(Some(_)) => self.hit.increment(1),
            Some(None) => self.negative_hit.increment(1),
            None => {}
        }
    }

    /// The store is asked.
    #[inline]
    pub(crate) fn miss(&self) {
        self.miss.increment(1);
    }

    /// A store's answer that went straight into the cache, counted as a miss.
    #[inline]
    pub(crate) fn missed<T>(&self, found: &Option<T>) {
        if found.is_some() {
            self.miss();
        }
    }

    /// `records` left the cache, for `why` (everything, when it is cleared).
    pub(crate) fn evicted(&self, why: Eviction, records: u64) {
        self.evicted[why as usize].increment(records);
        if let Eviction::Cleared = why {
            self.entries.set(0.0);
            self.negative_entries.set(0.0);
        }
    }

    /// The entries of both maps, as moka counts them (lazily: it catches up in its
    /// housekeeping).
    pub(crate) fn entries<K, V, S, T>(
        &self,
        positive: &moka::sync::Cache<K, V, S>,
        negative: &moka::sync::Cache<K, T>,
    ) {
        self.entries.set(positive.entry_count() as f64);
        self.negative_entries.set(negative.entry_count() as f64);
    }
}

/// A revocation listener lost its connection (or went silent past its bound), or a change
/// poller began failing to read.
#[cfg(all(
    feature = "cache",
    any(
        feature = "postgres",
        feature = "redis",
        feature = "sqlite",
        feature = "mysql"
    )
))]
pub(crate) fn listener_lost(bus: &'static str) {
    counter("tower_pat_listener_losses_total", &[("bus", bus)]).increment(1);
}

/// A batch of `uses` written back by `touch`, or not.
pub(crate) fn flushed(uses: usize, ok: bool) {
    let result = if ok { "ok" } else { "error" };
    counter("tower_pat_last_used_flushes_total", &[("result", result)]).increment(1);
    if ok {
        counter("tower_pat_last_used_uses_total", &[]).increment(uses as u64);
    }
}

/// `tokens` tokens changed (`created`, `rotated`, `revoked`, `deleted`, `pruned`: what the
/// audit trail recorded).
pub(crate) fn tokens_changed(change: &'static str, tokens: u64) {
    if tokens > 0 {
        counter("tower_pat_token_changes_total", &[("change", change)]).increment(tokens);
    }
}

/// The descriptions (units, help text) of the crate's metrics, given to the current
/// recorder.
fn describe() {
    #[cfg(feature = "metrics")]
    {
        use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
        describe_counter!(
            "tower_pat_requests_total",
            "Requests a PatLayer decided on, by outcome (accepted, anonymous, or the rejection code)"
        );
        describe_counter!(
            "tower_pat_scope_refusals_total",
            "Requests a scope check refused, by rejection code"
        );
        describe_counter!(
            "tower_pat_store_lookups_total",
            "Tokens a PatLayer asked its store for, by result"
        );
        describe_histogram!(
            "tower_pat_store_lookup_duration_seconds",
            Unit::Seconds,
            "How long a request waited for a store that could not answer at once"
        );
        describe_counter!(
            "tower_pat_cache_lookups_total",
            "What the token cache knew of a token asked for (hit, negative_hit, miss)"
        );
        describe_counter!(
            "tower_pat_cache_evictions_total",
            "Records the token cache dropped because they changed (revoked, pruned, cleared)"
        );
        describe_gauge!(
            "tower_pat_cache_entries",
            "Entries the token cache holds, by cache (positive: records, negative: unknown hashes)"
        );
        describe_counter!(
            "tower_pat_listener_losses_total",
            "Times a revocation listener lost its connection"
        );
        describe_counter!(
            "tower_pat_last_used_flushes_total",
            "Batches of token uses written back (last_used_at), by result"
        );
        describe_counter!(
            "tower_pat_last_used_uses_total",
            "Token uses written back (last_used_at)"
        );
        describe_counter!(
            "tower_pat_token_changes_total",
            "Tokens the lifecycle changed, by change"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_kind_has_its_counter() {
        assert_eq!(KINDS, crate::reject::tests::ALL);
        for (at, kind) in KINDS.iter().enumerate() {
            assert_eq!(*kind as usize, at, "{kind:?}");
        }
    }
}
