//! A cache hit, and a scope map's lookup, allocate nothing (counted by a real recorder too,
//! with the `metrics` feature): counted with a global
//! allocator that tallies the allocations of the current thread. In a binary of its own,
//! so no other test's allocations are in the count.

#![cfg(feature = "cache")]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    convert::Infallible,
    future::Future,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use tower::{Service, ServiceBuilder, service_fn};
use tower_pat::{
    MemoryStore, PatLayer, TokenStore, Tokens, scope::ScopeRegistry, store::CachedStore,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the count is a
// thread-local `Cell` with a constant initializer, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Held by the tests that use crossbeam's epochs (moka's caches, the Prometheus
/// recorder's buckets): the epochs are process-wide, and such work on another thread makes
/// a cache's housekeeping on this one hand its garbage on (an allocation) where it would
/// otherwise not.
static CACHES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    CACHES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// `poll_ready`, `call`, and one poll, which must complete the request.
fn drive<S>(svc: &mut S, req: Request<()>) -> Response<()>
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    match pin!(svc.call(req)).poll(&mut cx) {
        Poll::Ready(Ok(res)) => res,
        _ => panic!("a hit completes at once"),
    }
}

#[test]
fn a_cache_hit_allocates_nothing() {
    let _alone = one_at_a_time();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // With the `metrics` feature the hits are counted, by a real recorder.
    #[cfg(feature = "metrics")]
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    #[cfg(feature = "metrics")]
    let _counted = metrics::set_default_local_recorder(&recorder);
    let registry = ScopeRegistry::new().scope("orders:read", "See orders");
    let cached = CachedStore::new(MemoryStore::<i64>::new());
    let tokens = Tokens::new(cached, registry);
    let mut hashes = Vec::new();
    let mut plaintexts = Vec::new();
    rt.block_on(async {
        for user in 0..1_000 {
            let created = tokens.create(user, "t", ["orders:read"]).await.unwrap();
            hashes.push(created.record.token_hash);
            plaintexts.push(created.token.into_secret());
        }
    });
    let store = tokens.store();
    for hash in &hashes {
        assert!(matches!(store.find_ready(hash), Some(Ok(Some(_)))));
    }

    // moka applies recent inserts to its eviction lists in housekeeping that readers run
    // (every few dozen reads); that first catching up allocates the inserts' list nodes.
    for hash in &hashes {
        assert!(matches!(store.find_ready(hash), Some(Ok(Some(_)))));
    }
    // Then hits over many tokens, long enough for that housekeeping to run again many
    // times, allocate nothing.
    let before = allocations();
    for round in 0..100 {
        for hash in &hashes {
            let found = store.find_ready(hash);
            assert!(matches!(found, Some(Ok(Some(_)))), "round {round}");
        }
    }
    let hits = 100 * hashes.len() as u64;
    assert_eq!(
        allocations() - before,
        0,
        "allocations in {hits} cache hits"
    );

    // Through the layer: a request over the cache allocates exactly as much as one over
    // a bare `MemoryStore` (the request's own extensions map), so the cache adds none.
    let empty = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let mut over_cache = ServiceBuilder::new()
        .layer(tokens.layer().last_used_interval(None))
        .service(empty);
    let memory = Arc::new(MemoryStore::<i64>::new());
    let bare = Tokens::from_shared(
        Arc::clone(&memory),
        Arc::new(ScopeRegistry::new().scope("orders:read", "See orders")),
    );
    let plain = rt
        .block_on(bare.create(1, "t", ["orders:read"]))
        .unwrap()
        .token
        .into_secret();
    let mut over_memory = ServiceBuilder::new()
        .layer(PatLayer::from_shared(memory).last_used_interval(None))
        .service(empty);
    let request = |token: &str| {
        let mut req = Request::new(());
        req.headers_mut()
            .insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        req
    };
    let per_request = |svc: &mut dyn FnMut(Request<()>) -> Response<()>, token: &str| {
        let requests: Vec<_> = (0..1_000).map(|_| request(token)).collect();
        let before = allocations();
        for req in requests {
            assert_eq!(svc(req).status(), StatusCode::OK);
        }
        (allocations() - before) as f64 / 1_000.0
    };
    let cache_cost = per_request(&mut |req| drive(&mut over_cache, req), &plaintexts[500]);
    let memory_cost = per_request(&mut |req| drive(&mut over_memory, req), &plain);
    assert_eq!(
        cache_cost, memory_cost,
        "allocations per request: over the cache {cache_cost}, over MemoryStore {memory_cost}"
    );
}

/// The scope map's lookup allocates nothing: a request through a `ScopeMapLayer` of 50
/// methods costs exactly the allocations of one through a single `RequireScopesLayer`
/// (none, once the token is in the request).
#[test]
fn a_scope_map_lookup_allocates_nothing() {
    use tower::Layer;
    use tower_pat::{
        AccessToken, RequireScopesLayer, Requirement, ScopeMapLayer,
        record::{TokenId, TokenRecord},
        scope::{ScopeMatching, Scopes},
        token::TokenHash,
    };

    let now = time::OffsetDateTime::now_utc();
    let record = Arc::new(
        TokenRecord::new(
            TokenId::from_bytes([1; 16]),
            1_i64,
            TokenHash::of("t"),
            now,
            now + time::Duration::hours(1),
        )
        .with_scopes(Scopes::try_from_iter(["orders:read"]).unwrap()),
    );
    let map = (0..50).fold(ScopeMapLayer::grpc(), |map, i| {
        map.route(
            &format!("/orders.v1.Orders/Method{i}"),
            Requirement::all(["orders:read"]),
        )
    });
    let empty = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let mut mapped = map.layer(empty);
    let mut single = RequireScopesLayer::all(["orders:read"]).layer(empty);
    // Requests made up front: the token already in their extensions.
    let requests = |path: &str| -> Vec<Request<()>> {
        (0..1_000)
            .map(|_| {
                let mut req = Request::post(path).body(()).unwrap();
                AccessToken::new(Arc::clone(&record), ScopeMatching::EXACT)
                    .insert_into(req.extensions_mut());
                req
            })
            .collect()
    };
    let count = |svc: &mut dyn FnMut(Request<()>) -> Response<()>, path: &str| {
        let requests = requests(path);
        let before = allocations();
        for req in requests {
            assert_eq!(svc(req).status(), StatusCode::OK);
        }
        allocations() - before
    };
    let through_map = count(
        &mut |req| drive(&mut mapped, req),
        "/orders.v1.Orders/Method25",
    );
    let through_one = count(
        &mut |req| drive(&mut single, req),
        "/orders.v1.Orders/Method25",
    );
    assert_eq!(through_map, 0, "allocations in 1 000 lookups of the map");
    assert_eq!(through_one, 0, "allocations in 1 000 single scope checks");
}

/// With the `metrics` feature and a real recorder (the Prometheus exporter's), counting
/// allocates nothing: the layer, the cache and the scope check hold their counters from
/// the moment they are built, and a request costs an atomic add per counter. A request
/// through a counted stack allocates exactly what one through an uncounted stack does.
#[cfg(feature = "metrics")]
#[test]
fn counting_allocates_nothing() {
    let _alone = one_at_a_time();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let empty = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    // The same stack twice: built with the recorder as the thread's, and with none.
    let stack = || {
        let registry = ScopeRegistry::new().scope("orders:read", "See orders");
        // No cache: moka's housekeeping allocates now and then, which would blur the
        // count (a counted cache hit is measured above).
        let tokens = Tokens::new(MemoryStore::<i64>::new(), registry);
        let plain = rt
            .block_on(tokens.create(1, "t", ["orders:read"]))
            .unwrap()
            .token
            .into_secret();
        let svc = ServiceBuilder::new()
            .layer(tokens.layer().last_used_interval(None))
            .layer(tokens.require_all(["orders:read"]))
            .service(empty);
        (tokens, svc, plain)
    };
    let (_counted_tokens, mut counted, counted_token) = {
        let _recorder = metrics::set_default_local_recorder(&recorder);
        stack()
    };
    let (_tokens, mut uncounted, uncounted_token) = stack();
    let request = |token: &str| {
        let mut req = Request::new(());
        req.headers_mut()
            .insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        req
    };
    let per_request = |svc: &mut dyn FnMut(Request<()>) -> Response<()>, token: &str| {
        for _ in 0..100 {
            assert_eq!(svc(request(token)).status(), StatusCode::OK);
        }
        let requests: Vec<_> = (0..1_000).map(|_| request(token)).collect();
        let before = allocations();
        for req in requests {
            assert_eq!(svc(req).status(), StatusCode::OK);
        }
        (allocations() - before) as f64 / 1_000.0
    };
    let with = per_request(&mut |req| drive(&mut counted, req), &counted_token);
    let without = per_request(&mut |req| drive(&mut uncounted, req), &uncounted_token);
    assert_eq!(
        with, without,
        "allocations per request: counted {with}, with no recorder {without}"
    );

    // The counters did count, in the recorder they were built with.
    let text = handle.render();
    for line in [
        r#"tower_pat_requests_total{outcome="accepted"} 1100"#,
        r#"tower_pat_store_lookups_total{result="found"} 1100"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}
