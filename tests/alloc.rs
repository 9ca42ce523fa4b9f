//! A cache hit, and a scope map's lookup, allocate nothing: counted with a global
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
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
