//! Every builder that panics on bad configuration (`#[track_caller]`) reports the line of
//! the application that called it, not a line inside the crate: a misspelt route scope
//! fails at startup pointing at the route.

use std::{
    panic::{self, AssertUnwindSafe},
    sync::{Mutex, PoisonError},
};

use tower_pat::{
    MemoryStore, PatLayer, RequireScopesLayer, Requirement, ScopeMapLayer, Tokens,
    scope::ScopeRegistry,
};

/// Where the last panic was reported, as the panic hook saw it.
static REPORTED: Mutex<Option<(String, u32)>> = Mutex::new(None);

/// One panic at a time: the hook is the process's, and the tests run on several threads.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f`, which must panic, and returns the file and line the panic reported.
fn panic_site(f: impl FnOnce()) -> (String, u32) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| (l.file().to_owned(), l.line()));
        *REPORTED.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(previous);
    assert!(outcome.is_err(), "it did not panic");
    REPORTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .expect("the hook saw the panic")
}

/// Asserts that the panic of `f` was reported in this file (the call's line), not inside
/// the crate.
fn reports_caller(what: &str, f: impl FnOnce()) {
    let (file, line) = panic_site(f);
    assert_eq!(
        file,
        file!(),
        "{what}: the panic is reported at {file}:{line}"
    );
}

fn tokens() -> Tokens<MemoryStore<i64>> {
    Tokens::new(
        MemoryStore::new(),
        ScopeRegistry::new().scope("orders:read", "See orders"),
    )
}

#[test]
fn configuration_panics_point_at_the_caller() {
    let tokens = tokens();
    // Each closure calls the builder on the line `Location::caller()` is read on.
    reports_caller("require_all", || drop(tokens.require_all(["orders:raed"])));
    reports_caller("require_any", || drop(tokens.require_any(["orders:raed"])));
    reports_caller("require", || {
        drop(tokens.require(Requirement::all(["x y"])))
    });
    reports_caller("RequireScopesLayer::all", || {
        drop(RequireScopesLayer::all(Vec::<&str>::new()))
    });
    reports_caller("RequireScopesLayer::any", || {
        drop(RequireScopesLayer::any(["bad scope"]))
    });
    reports_caller("Requirement::one_of", || {
        drop(Requirement::one_of(Vec::<Vec<&str>>::new()))
    });
    reports_caller("ScopeRegistry::scope", || {
        drop(ScopeRegistry::new().scope("a b", "x"))
    });
    reports_caller("ScopeRegistry::default_scopes", || {
        drop(ScopeRegistry::new().default_scopes(["nope"]))
    });
    reports_caller("PatLayer::realm", || {
        drop(PatLayer::new(MemoryStore::<i64>::new()).realm("a\"b"))
    });
    reports_caller("Tokens::expires_in", || {
        drop(tokens.clone().expires_in(time::Duration::ZERO))
    });
    reports_caller("Tokens::max_lifetime", || {
        drop(tokens.clone().max_lifetime(time::Duration::ZERO))
    });
    reports_caller("ScopeMapLayer::route", || {
        drop(ScopeMapLayer::grpc().route("not a path", Requirement::all(["a"])))
    });
    reports_caller("ScopeMapLayer::authenticated", || {
        drop(ScopeMapLayer::http().authenticated("no-slash"))
    });
    reports_caller("ScopeMapLayer::registry", || {
        drop(
            ScopeMapLayer::grpc()
                .route("/p.S/M", Requirement::all(["undefined"]))
                .registry(tokens.registry()),
        )
    });
}

#[cfg(feature = "manage")]
#[test]
fn the_token_page_reports_the_caller() {
    use tower_pat::manage::TokenPage;
    reports_caller("TokenPage::new", || {
        drop(TokenPage::new(tokens(), "no-slash"))
    });
    reports_caller("TokenPage::allowed_origins", || {
        drop(TokenPage::new(tokens(), "/t").allowed_origins(["ftp://x"]))
    });
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_table_names_report_the_caller() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt
        .block_on(tower_pat::SqliteStore::<i64>::open(":memory:"))
        .unwrap();
    reports_caller("SqliteStore::with_table", || drop(store.with_table("a b")));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_options_report_the_caller() {
    use tower_pat::store::postgres::ListenOptions;
    reports_caller("ListenOptions::staleness_bound", || {
        let _ = ListenOptions::new().staleness_bound(std::time::Duration::ZERO);
    });
}

#[cfg(feature = "redis")]
#[test]
fn redis_options_report_the_caller() {
    use tower_pat::store::redis::RedisBus;
    reports_caller("RedisBusBuilder::channel", || {
        drop(RedisBus::builder().channel(""))
    });
    reports_caller("RedisBusBuilder::staleness_bound", || {
        drop(RedisBus::builder().staleness_bound(std::time::Duration::ZERO))
    });
}
