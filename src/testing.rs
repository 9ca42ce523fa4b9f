//! The conformance kit: suites that check a store for the behaviour
//! [`PatLayer`](crate::PatLayer) and [`Tokens`](crate::Tokens) rely on.
//!
//! - [`Conformance::token_store`] checks a find-only [`TokenStore`], the one thing the
//!   layer needs. The kit cannot write into such a store, so you hand it a function that
//!   inserts a record into your table the way your application does.
//! - [`Conformance::manage_tokens`] checks a [`ManageTokens`] store: the find suite
//!   (seeded through the store's own `insert`), then create, list, revoke, delete and
//!   prune.
//!
//! What a store does not keep is switched off by default and switched on by the caller:
//! [`client_id`](Conformance::client_id) (a `client_id` column that round-trips) and
//! [`last_used`](Conformance::last_used) (a `last_used_at` column that round-trips and
//! that [`TokenStore::touch`] writes).
//!
//! ```
//! use tower_pat::{MemoryStore, testing::Conformance};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // `users` hands out user ids no token in the store belongs to yet.
//! Conformance::new(|n| i64::from(n) + 1)
//!     .client_id(true)
//!     .last_used(true)
//!     .manage_tokens(&MemoryStore::<i64>::new())
//!     .await;
//! # });
//! ```
//!
//! Each property that fails panics with a message naming it and, for a record that does
//! not read back, the field that differs, e.g.
//! `tower-pat conformance: revoke of another user's token changes nothing: …` or
//! `tower-pat conformance: find returns the stored record exactly: token 3f…: field
//! expires_at: got 2026-01-01 0:00:00.0 +00:00:00, want …`.
//!
//! What it checks:
//!
//! - `find` by hash returns the record exactly (every field; scopes with every character
//!   RFC 6749 allows, names with quotes and non-ASCII, timestamps given with a non-UTC
//!   offset come back as the same instant, to the second); an unknown hash is `None`;
//!   revoked and expired records are found too, flags intact; `find_ready`, when it
//!   answers, agrees with `find`.
//! - `get` finds a token by id, whoever owns it.
//! - `list` returns only that user's tokens, newest first, ties by id (descending).
//! - `revoke` of the user's own token says `Revoked` and sets `updated_at`; again says
//!   `AlreadyRevoked` and changes nothing; of another user's token (or an unknown id) says
//!   `NotFound` and changes nothing; ten concurrent revokes of one token: exactly one wins.
//! - `revoke_all` revokes the user's active tokens, counts them, and touches no one else's.
//! - `delete` removes only the user's own token.
//! - with [`last_used`](Conformance::last_used): `touch` sets `last_used_at` of every token
//!   of its batch and nothing else, never moves it backwards, and skips an unknown id.
//! - `insert` of a duplicate hash or id is a [`StoreErrorKind::Conflict`] and stores
//!   nothing; fifty concurrent inserts all land, none lost or mixed up.
//! - `prune` removes what expired, and what was revoked, strictly before the cut-off, and
//!   keeps the rest (what expired or was revoked exactly at the cut-off, active tokens,
//!   recently revoked ones, ones expired after the cut-off); it counts what it removed.
//!   Its records are dated around the year 2000, so a store holding real tokens loses
//!   none to it — still, do not point it at production.
//!
//! With [`lifecycle`](Conformance::lifecycle) (on by default), the operations of a
//! token's lifecycle:
//!
//! - `rotated_from` and `rotated_to` round-trip.
//! - `list_page` pages through `list`'s order, newest first, ties by id, with cursors.
//! - `insert_limited` counts only live tokens (not revoked, expired or rotated), stores
//!   nothing at the cap, and twenty concurrent inserts against a cap of five leave five.
//! - `rotate` stores the successor and marks the old token (`rotated_to`, `expires_at`
//!   lowered and never raised, revoked when the overlap is zero, `updated_at`); rotating
//!   again says `AlreadyRotated` naming the successor and stores nothing; another user's
//!   token is `NotFound`, a revoked or expired one `Inactive`; of ten concurrent rotations
//!   of one token exactly one succeeds and one successor is stored.
//! - `expiring` pages through live tokens expiring within a window, soonest first (ties
//!   by id), leaving out revoked, rotated, expired ones and ones expiring later.
//! - `claim_expiry_notices` returns each token once per threshold, never for a longer
//!   threshold after a shorter one, again for a shorter one, and concurrent claims never
//!   hand out a token twice.
//!
//! The expiry suites date their records in a random hour of the year 2500 and pass that
//! as "now", so that other tokens in the store (real ones included) neither disturb them
//! nor get marked.

use std::{fmt, future::Future};

use futures_util::future::join_all;
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::{
    record::{TokenId, TokenRecord},
    scope::Scopes,
    store::{Cursor, ManageTokens, Revoked, Rotated, StoreError, StoreErrorKind, TokenStore},
    token::TokenHash,
};

/// The suites, with what the store under test keeps.
///
/// `users` gives user ids of the store's type: it is called with `0, 1, 2, …` (below
/// 64), once each, and must return distinct ids that own no token in the store yet — say
/// `|n| i64::from(n) + 1` on an empty table, or `|_| Uuid::new_v4()`.
#[derive(Debug)]
pub struct Conformance<F> {
    users: F,
    options: Options,
}

#[derive(Clone, Copy, Debug)]
struct Options {
    client_id: bool,
    last_used: bool,
    lifecycle: bool,
}

impl<F> Conformance<F> {
    /// The suites, with `client_id` and `last_used_at` off and the lifecycle suites on.
    pub fn new(users: F) -> Self {
        Self {
            users,
            options: Options {
                client_id: false,
                last_used: false,
                lifecycle: true,
            },
        }
    }

    /// Whether to check the lifecycle operations of [`ManageTokens`] (`rotate`,
    /// `list_page`, `insert_limited`, `expiring`, `claim_expiry_notices`) and the
    /// `rotated_from` / `rotated_to` fields. On by default; off for a store that keeps
    /// the defaults of those methods (which answer
    /// [`StoreErrorKind::Unsupported`]).
    pub fn lifecycle(mut self, on: bool) -> Self {
        self.options.lifecycle = on;
        self
    }

    /// Whether the store keeps `client_id`: records then carry one, and it must round-trip.
    pub fn client_id(mut self, on: bool) -> Self {
        self.options.client_id = on;
        self
    }

    /// Whether the store keeps `last_used_at`: records then carry one, it must
    /// round-trip, and [`TokenStore::touch`] must write it.
    pub fn last_used(mut self, on: bool) -> Self {
        self.options.last_used = on;
        self
    }

    /// Runs the find suite against a find-only store. `insert` writes one record into the
    /// store's table, as your application does (the kit cannot: the trait has no insert);
    /// it must panic if it fails.
    ///
    /// The store is left holding the records the suite made.
    ///
    /// # Panics
    ///
    /// On the first property the store fails, with a message that names it; on any store
    /// error too (the store under test must not fail).
    pub async fn token_store<St, I, Fut>(self, store: &St, mut insert: I)
    where
        St: TokenStore + ?Sized,
        F: FnMut(u32) -> St::UserId,
        I: FnMut(TokenRecord<St::UserId>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut kit = Kit::new(store, self.users, self.options);
        kit.find_round_trips(&mut insert).await;
        if self.options.last_used {
            kit.touch_sets_last_used_at(&mut insert).await;
        }
    }

    /// Runs every suite against a [`ManageTokens`] store.
    ///
    /// The store is left holding the records the suite made (about a hundred).
    ///
    /// # Panics
    ///
    /// On the first property the store fails, with a message that names it; on any store
    /// error too (the store under test must not fail).
    pub async fn manage_tokens<St>(self, store: &St)
    where
        St: ManageTokens + ?Sized,
        F: FnMut(u32) -> St::UserId,
    {
        let mut insert = |record| async move { ok("insert", store.insert(record)).await };
        let mut kit = Kit::new(store, self.users, self.options);
        kit.find_round_trips(&mut insert).await;
        if self.options.last_used {
            kit.touch_sets_last_used_at(&mut insert).await;
        }
        kit.get_finds_by_id().await;
        kit.list_is_per_user_newest_first().await;
        kit.revoke_is_per_user().await;
        kit.concurrent_revokes_have_one_winner().await;
        kit.revoke_all_is_per_user().await;
        kit.delete_is_per_user().await;
        kit.duplicates_conflict().await;
        kit.concurrent_inserts_do_not_collide().await;
        kit.prune_keeps_what_it_must().await;
        if self.options.lifecycle {
            kit.rotation_fields_round_trip().await;
            kit.list_page_pages_in_order().await;
            kit.insert_limited_keeps_the_cap().await;
            kit.rotate_is_one_step().await;
            kit.concurrent_rotations_have_one_winner().await;
            kit.expiring_pages_soonest_first().await;
            kit.expiry_notices_are_claimed_once().await;
        }
    }
}

struct Kit<'s, St: ?Sized, F> {
    store: &'s St,
    users: F,
    next_user: u32,
    now: OffsetDateTime,
    options: Options,
}

/// Fails the property.
#[track_caller]
fn fail(property: &str, detail: impl fmt::Display) -> ! {
    panic!("tower-pat conformance: {property}: {detail}")
}

#[track_caller]
fn check(property: &str, ok: bool, detail: impl FnOnce() -> String) {
    if !ok {
        fail(property, detail());
    }
}

#[track_caller]
fn check_eq<T: PartialEq + fmt::Debug>(property: &str, got: T, want: T) {
    if got != want {
        fail(property, format_args!("got {got:?}, want {want:?}"));
    }
}

/// Compares two records field by field and names the first field that differs.
#[track_caller]
fn check_record<U: PartialEq + fmt::Debug>(
    property: &str,
    got: &TokenRecord<U>,
    want: &TokenRecord<U>,
) {
    macro_rules! field {
        ($name:ident) => {
            if got.$name != want.$name {
                fail(
                    property,
                    format_args!(
                        "token {}: field {}: got {:?}, want {:?}",
                        want.id,
                        stringify!($name),
                        got.$name,
                        want.$name
                    ),
                );
            }
        };
    }
    field!(id);
    field!(user_id);
    field!(client_id);
    field!(name);
    field!(scopes);
    field!(token_hash);
    field!(revoked);
    field!(created_at);
    field!(updated_at);
    field!(expires_at);
    field!(last_used_at);
    field!(rotated_from);
    field!(rotated_to);
}

/// Compares two lists of records: their ids in order, then each record.
#[track_caller]
fn check_records<U: PartialEq + fmt::Debug>(
    property: &str,
    got: &[TokenRecord<U>],
    want: &[TokenRecord<U>],
) {
    let ids = |records: &[TokenRecord<U>]| records.iter().map(|r| r.id).collect::<Vec<_>>();
    check_eq(&format!("{property} (ids, in order)"), ids(got), ids(want));
    for (got, want) in got.iter().zip(want) {
        check_record(property, got, want);
    }
}

/// The store's answer, or a failure of `property`.
async fn ok<T>(property: &str, fut: impl Future<Output = Result<T, StoreError>>) -> T {
    match fut.await {
        Ok(value) => value,
        Err(err) => fail(property, format_args!("the store failed: {err}")),
    }
}

fn random_id() -> TokenId {
    TokenId::random().unwrap_or_else(|err| fail("setup", err))
}

/// A hash no other record has (the hash of a random id's text).
fn random_hash() -> TokenHash {
    TokenHash::of(&format!("tower-pat conformance {}", random_id()))
}

fn utc(year: i32, ordinal: u16) -> OffsetDateTime {
    time::Date::from_ordinal_date(year, ordinal)
        .unwrap_or_else(|err| fail("setup", err))
        .midnight()
        .assume_utc()
}

/// Every character RFC 6749 allows in a scope name (`*` only as the wildcard), and then
/// some length.
fn odd_scopes() -> Scopes {
    let every_char: String = (0x21u8..=0x7e)
        .filter(|b| !matches!(b, b'"' | b'\\' | b'*'))
        .map(char::from)
        .collect();
    let mut names = vec![
        every_char,
        "orders:read".to_owned(),
        "!#[]^~".to_owned(),
        "';--".to_owned(),
        "[]".to_owned(),
        "*".to_owned(),
        "UPPER:lower".to_owned(),
        "a".repeat(200),
    ];
    names.extend((0..40).map(|i| format!("scope:{i:02}")));
    Scopes::try_from_iter(names).unwrap_or_else(|err| fail("setup", err))
}

impl<'s, St, F> Kit<'s, St, F>
where
    St: TokenStore + ?Sized,
    F: FnMut(u32) -> St::UserId,
{
    fn new(store: &'s St, users: F, options: Options) -> Self {
        Self {
            store,
            users,
            next_user: 0,
            now: OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .expect("0 is a valid nanosecond"),
            options,
        }
    }

    fn user(&mut self) -> St::UserId {
        let n = self.next_user;
        self.next_user += 1;
        (self.users)(n)
    }

    /// An active record: created a day ago, expiring in a year.
    fn record(&self, user: &St::UserId, name: &str) -> TokenRecord<St::UserId> {
        let created = self.now - Duration::days(1);
        let mut record = TokenRecord::new(
            random_id(),
            user.clone(),
            random_hash(),
            created,
            self.now + Duration::days(365),
        )
        .with_name(name)
        .with_scopes(
            Scopes::try_from_iter(["orders:read"]).unwrap_or_else(|err| fail("setup", err)),
        );
        if self.options.client_id {
            record = record.with_client_id("client-1");
        }
        if self.options.last_used {
            record = record.with_last_used_at(created + Duration::hours(1));
        }
        record
    }

    /// `find` (and `find_ready`, when it answers) by the record's hash returns exactly
    /// the record.
    async fn expect_found(&self, property: &str, record: &TokenRecord<St::UserId>) {
        match ok(property, self.store.find(&record.token_hash)).await {
            Some(found) => check_record(property, &found, record),
            None => fail(
                property,
                format_args!("find of token {} found nothing", record.id),
            ),
        }
        if let Some(ready) = self.store.find_ready(&record.token_hash) {
            let property = format!("{property} (find_ready agrees with find)");
            match ready {
                Ok(Some(found)) => check_record(&property, &found, record),
                Ok(None) => fail(
                    &property,
                    format_args!("find_ready of token {} found nothing", record.id),
                ),
                Err(err) => fail(&property, format_args!("find_ready failed: {err}")),
            }
        }
    }

    async fn find_round_trips<I, Fut>(&mut self, insert: &mut I)
    where
        I: FnMut(TokenRecord<St::UserId>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let user = self.user();
        let other = self.user();

        let plus = UtcOffset::from_hms(5, 30, 0).unwrap_or_else(|err| fail("setup", err));
        let minus = UtcOffset::from_hms(-3, 0, 0).unwrap_or_else(|err| fail("setup", err));
        let mut full = self.record(&user, "Laptop “main” — 'ünïcode' ✓ \"quoted\" \\ back");
        full.scopes = odd_scopes();
        full.created_at = (self.now - Duration::days(3)).to_offset(plus);
        full.updated_at = (self.now - Duration::days(2)).to_offset(minus);
        full.expires_at = (self.now + Duration::days(30)).to_offset(plus);
        if self.options.last_used {
            full.last_used_at = Some((self.now - Duration::hours(5)).to_offset(minus));
        }
        insert(full.clone()).await;
        self.expect_found(
            "find returns the stored record exactly (scopes, name, timestamps with offset)",
            &full,
        )
        .await;

        let property = "the empty scope set round-trips";
        let mut bare = self.record(&other, "bare");
        bare.scopes = Scopes::empty();
        insert(bare.clone()).await;
        self.expect_found(property, &bare).await;

        let property = "a revoked record is found, flag intact";
        let mut revoked = self.record(&user, "revoked");
        revoked.revoked = true;
        revoked.updated_at = self.now;
        insert(revoked.clone()).await;
        self.expect_found(property, &revoked).await;

        let property = "an expired record is found, expiry intact";
        let mut expired = self.record(&user, "expired");
        expired.expires_at = self.now - Duration::hours(1);
        insert(expired.clone()).await;
        self.expect_found(property, &expired).await;
        check(property, expired.is_expired_at(self.now), || {
            "the kit's own record is not expired".to_owned()
        });

        let property = "an unknown hash is None";
        check(
            property,
            ok(property, self.store.find(&random_hash()))
                .await
                .is_none(),
            || "find of a hash never stored returned a record".to_owned(),
        );
        if let Some(Ok(Some(_))) = self.store.find_ready(&random_hash()) {
            fail(
                property,
                "find_ready of a hash never stored returned a record",
            );
        }
    }

    async fn touch_sets_last_used_at<I, Fut>(&mut self, insert: &mut I)
    where
        I: FnMut(TokenRecord<St::UserId>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let property = "touch sets last_used_at of each token of its batch and nothing else";
        let user = self.user();
        let mut first = self.record(&user, "touch me");
        first.last_used_at = None;
        let mut second = self.record(&user, "touch me too");
        second.last_used_at = Some(self.now - Duration::days(1));
        let untouched = self.record(&user, "leave me");
        for record in [&first, &second, &untouched] {
            insert(record.clone()).await;
        }
        let at = self.now - Duration::seconds(30);
        let batch = [(first.id, at), (random_id(), at), (second.id, self.now)];
        ok(property, self.store.touch(&batch)).await;
        first.last_used_at = Some(at);
        second.last_used_at = Some(self.now);
        self.expect_found(property, &first).await;
        self.expect_found(property, &second).await;
        self.expect_found(property, &untouched).await;

        let property = "touch never moves last_used_at backwards";
        ok(
            property,
            self.store
                .touch(&[(first.id, at - Duration::hours(1)), (second.id, at)]),
        )
        .await;
        self.expect_found(property, &first).await;
        self.expect_found(property, &second).await;

        ok(
            "touch of an empty batch is not an error",
            self.store.touch(&[]),
        )
        .await;
    }
}

impl<St, F> Kit<'_, St, F>
where
    St: ManageTokens + ?Sized,
    F: FnMut(u32) -> St::UserId,
{
    async fn insert(&self, property: &str, record: &TokenRecord<St::UserId>) {
        ok(property, self.store.insert(record.clone())).await;
    }

    async fn get(&self, property: &str, id: TokenId) -> Option<TokenRecord<St::UserId>> {
        ok(property, self.store.get(id)).await
    }

    /// `find` by the record's hash returns exactly the record, and so does `get`.
    async fn expect_stored(&self, property: &str, record: &TokenRecord<St::UserId>) {
        self.expect_found(property, record).await;
        match self.get(property, record.id).await {
            Some(got) => check_record(&format!("{property} (get by id)"), &got, record),
            None => fail(
                property,
                format_args!("get of token {} found nothing", record.id),
            ),
        }
    }

    async fn get_finds_by_id(&mut self) {
        let property = "get finds a token by id, whoever owns it";
        let user = self.user();
        let record = self.record(&user, "get me");
        self.insert(property, &record).await;
        self.expect_stored(property, &record).await;
        let property = "an unknown id is None";
        check(
            property,
            self.get(property, random_id()).await.is_none(),
            || "get of an id never stored returned a record".to_owned(),
        );
    }

    async fn expect_gone(&self, property: &str, record: &TokenRecord<St::UserId>) {
        check(
            property,
            ok(property, self.store.find(&record.token_hash))
                .await
                .is_none(),
            || format!("find still finds token {}", record.id),
        );
        check(
            property,
            self.get(property, record.id).await.is_none(),
            || format!("get still finds token {}", record.id),
        );
    }

    async fn list_is_per_user_newest_first(&mut self) {
        let property = "list returns the user's tokens only, newest first, ties by id";
        let user = self.user();
        let other = self.user();
        let base = self.now - Duration::days(10);
        let mut mine = Vec::new();
        // Inserted out of order; two share a creation second.
        for (i, offset) in [3, 0, 2, 0, 1].into_iter().enumerate() {
            let mut record = self.record(&user, &format!("list {i}"));
            record.created_at = base + Duration::hours(offset);
            record.updated_at = record.created_at;
            self.insert(property, &record).await;
            mine.push(record);
        }
        let theirs = self.record(&other, "someone else's");
        self.insert(property, &theirs).await;

        mine.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
        check_records(property, &ok(property, self.store.list(&user)).await, &mine);
        check_records(
            property,
            &ok(property, self.store.list(&other)).await,
            &[theirs],
        );
        let nobody = self.user();
        check_records(
            "list of a user without tokens is empty",
            &ok(property, self.store.list(&nobody)).await,
            &[],
        );
    }

    async fn revoke_is_per_user(&mut self) {
        let owner = self.user();
        let intruder = self.user();
        let token = self.record(&owner, "revoke me");
        self.insert("revoke", &token).await;
        let theirs = self.record(&intruder, "the intruder's own");
        self.insert("revoke", &theirs).await;

        let property = "revoke of another user's token changes nothing";
        check_eq(
            property,
            ok(property, self.store.revoke(&intruder, token.id, self.now)).await,
            Revoked::NotFound,
        );
        self.expect_stored(property, &token).await;

        let property = "revoke of an unknown id is NotFound";
        check_eq(
            property,
            ok(property, self.store.revoke(&owner, random_id(), self.now)).await,
            Revoked::NotFound,
        );

        let property = "revoke of the user's own token revokes it and sets updated_at";
        let at = (self.now + Duration::seconds(7))
            .to_offset(UtcOffset::from_hms(2, 0, 0).unwrap_or_else(|err| fail("setup", err)));
        check_eq(
            property,
            ok(property, self.store.revoke(&owner, token.id, at)).await,
            Revoked::Revoked,
        );
        let mut revoked = token.clone();
        revoked.revoked = true;
        revoked.updated_at = at;
        self.expect_stored(property, &revoked).await;

        let property = "revoking twice says AlreadyRevoked and changes nothing";
        check_eq(
            property,
            ok(
                property,
                self.store.revoke(&owner, token.id, at + Duration::hours(1)),
            )
            .await,
            Revoked::AlreadyRevoked,
        );
        self.expect_stored(property, &revoked).await;

        let property = "revoke of another user's revoked token is still NotFound";
        check_eq(
            property,
            ok(property, self.store.revoke(&intruder, token.id, self.now)).await,
            Revoked::NotFound,
        );
        self.expect_stored("revoke leaves other users' tokens alone", &theirs)
            .await;
    }

    async fn concurrent_revokes_have_one_winner(&mut self) {
        let property = "concurrent revokes of one token: exactly one says Revoked";
        let user = self.user();
        let token = self.record(&user, "raced");
        self.insert(property, &token).await;
        let outcomes =
            join_all((0..10).map(|_| self.store.revoke(&user, token.id, self.now))).await;
        let mut winners = 0;
        for outcome in outcomes {
            match outcome {
                Ok(Revoked::Revoked) => winners += 1,
                Ok(Revoked::AlreadyRevoked) => {}
                Ok(Revoked::NotFound) => fail(property, "a revoke said NotFound"),
                Err(err) => fail(property, format_args!("the store failed: {err}")),
            }
        }
        check_eq(property, winners, 1);
    }

    async fn revoke_all_is_per_user(&mut self) {
        let property = "revoke_all revokes the user's active tokens and counts them";
        let user = self.user();
        let other = self.user();
        let mut mine = Vec::new();
        for i in 0..3 {
            let record = self.record(&user, &format!("all {i}"));
            self.insert(property, &record).await;
            mine.push(record);
        }
        let mut earlier = self.record(&user, "revoked before");
        earlier.revoked = true;
        earlier.updated_at = self.now - Duration::hours(2);
        self.insert(property, &earlier).await;
        let mut theirs = Vec::new();
        for i in 0..2 {
            let record = self.record(&other, &format!("theirs {i}"));
            self.insert(property, &record).await;
            theirs.push(record);
        }

        let at = self.now + Duration::seconds(11);
        check_eq(
            property,
            ok(property, self.store.revoke_all(&user, at)).await,
            3,
        );
        for record in &mine {
            let mut revoked = record.clone();
            revoked.revoked = true;
            revoked.updated_at = at;
            self.expect_stored(property, &revoked).await;
        }
        self.expect_stored(
            "revoke_all leaves an already revoked token's updated_at alone",
            &earlier,
        )
        .await;
        for record in &theirs {
            self.expect_stored("revoke_all touches only that user's tokens", record)
                .await;
        }

        let property = "revoke_all again revokes nothing";
        check_eq(
            property,
            ok(property, self.store.revoke_all(&user, at)).await,
            0,
        );
        let nobody = self.user();
        check_eq(
            "revoke_all of a user without tokens revokes nothing",
            ok(property, self.store.revoke_all(&nobody, at)).await,
            0,
        );
    }

    async fn delete_is_per_user(&mut self) {
        let owner = self.user();
        let intruder = self.user();
        let token = self.record(&owner, "delete me");
        self.insert("delete", &token).await;
        let theirs = self.record(&intruder, "the intruder's own");
        self.insert("delete", &theirs).await;

        let property = "delete of another user's token changes nothing";
        check(
            property,
            !ok(property, self.store.delete(&intruder, token.id)).await,
            || "delete said it deleted".to_owned(),
        );
        self.expect_stored(property, &token).await;

        let property = "delete of the user's own token removes it";
        check(
            property,
            ok(property, self.store.delete(&owner, token.id)).await,
            || "delete said nothing went".to_owned(),
        );
        self.expect_gone(property, &token).await;
        check_records(property, &ok(property, self.store.list(&owner)).await, &[]);

        let property = "deleting twice says nothing went";
        check(
            property,
            !ok(property, self.store.delete(&owner, token.id)).await,
            || "the second delete said it deleted".to_owned(),
        );
        self.expect_stored("delete leaves other users' tokens alone", &theirs)
            .await;
    }

    async fn duplicates_conflict(&mut self) {
        let user = self.user();
        let other = self.user();
        let original = self.record(&user, "original");
        self.insert("insert", &original).await;

        let property = "insert of a duplicate hash is a Conflict and stores nothing";
        let mut same_hash = self.record(&other, "same hash");
        same_hash.token_hash = original.token_hash;
        self.expect_conflict(property, &same_hash).await;
        check(
            property,
            self.get(property, same_hash.id).await.is_none(),
            || "the duplicate was stored under its id".to_owned(),
        );
        check_records(property, &ok(property, self.store.list(&other)).await, &[]);
        self.expect_stored(property, &original).await;

        let property = "insert of a duplicate id is a Conflict and stores nothing";
        let mut same_id = self.record(&other, "same id");
        same_id.id = original.id;
        self.expect_conflict(property, &same_id).await;
        check(
            property,
            ok(property, self.store.find(&same_id.token_hash))
                .await
                .is_none(),
            || "the duplicate was stored under its hash".to_owned(),
        );
        self.expect_stored(property, &original).await;
    }

    async fn expect_conflict(&self, property: &str, record: &TokenRecord<St::UserId>) {
        match self.store.insert(record.clone()).await {
            Ok(()) => fail(property, "insert succeeded"),
            Err(err) => check_eq(property, err.kind(), StoreErrorKind::Conflict),
        }
    }

    async fn concurrent_inserts_do_not_collide(&mut self) {
        let property = "concurrent inserts all land, none lost or mixed up";
        let user = self.user();
        let records: Vec<_> = (0..50)
            .map(|i| self.record(&user, &format!("concurrent {i}")))
            .collect();
        let results = join_all(records.iter().map(|r| self.store.insert(r.clone()))).await;
        for (record, result) in records.iter().zip(results) {
            if let Err(err) = result {
                fail(
                    property,
                    format_args!("insert of token {} failed: {err}", record.id),
                );
            }
        }
        let mut listed = ok(property, self.store.list(&user)).await;
        let mut want = records.clone();
        listed.sort_by_key(|r| r.id);
        want.sort_by_key(|r| r.id);
        check_records(property, &listed, &want);
        let found = join_all(records.iter().map(|r| self.store.find(&r.token_hash))).await;
        for (record, found) in records.iter().zip(found) {
            match found {
                Ok(Some(found)) => check_record(property, &found, record),
                Ok(None) => fail(property, format_args!("token {} is missing", record.id)),
                Err(err) => fail(property, format_args!("the store failed: {err}")),
            }
        }
    }

    async fn prune_keeps_what_it_must(&mut self) {
        let property = "prune";
        let user = self.user();
        // Far in the past, so that no real token of a shared store is old enough.
        let cutoff = utc(2001, 1);
        let far = self.now + Duration::days(365);
        let make = |name: &str, created: OffsetDateTime| {
            let mut record = self.record(&user, name);
            record.created_at = created;
            record.updated_at = created;
            record.expires_at = far;
            record
        };

        let mut expired = make("expired long ago", cutoff - Duration::days(40));
        expired.expires_at = cutoff - Duration::days(10);
        let mut expired_just_before = make(
            "expired a second before the cut-off",
            cutoff - Duration::days(40),
        );
        expired_just_before.expires_at = cutoff - Duration::seconds(1);
        let mut revoked = make("revoked long ago", cutoff - Duration::days(40));
        revoked.revoked = true;
        revoked.updated_at = cutoff - Duration::days(5);
        let mut revoked_just_before = make(
            "revoked a second before the cut-off",
            cutoff - Duration::days(40),
        );
        revoked_just_before.revoked = true;
        revoked_just_before.updated_at = cutoff - Duration::seconds(1);
        let doomed = [expired, expired_just_before, revoked, revoked_just_before];

        let mut expired_at_cutoff = make("expired at the cut-off", cutoff - Duration::days(40));
        expired_at_cutoff.expires_at = cutoff;
        let mut revoked_at_cutoff = make("revoked at the cut-off", cutoff - Duration::days(40));
        revoked_at_cutoff.revoked = true;
        revoked_at_cutoff.updated_at = cutoff;

        let mut revoked_recently = make("revoked after the cut-off", cutoff - Duration::days(40));
        revoked_recently.revoked = true;
        revoked_recently.updated_at = cutoff + Duration::hours(1);
        let mut expired_recently = make("expired after the cut-off", cutoff - Duration::days(40));
        expired_recently.expires_at = cutoff + Duration::hours(1);
        let old_but_active = make(
            "created long ago, still active",
            cutoff - Duration::days(400),
        );
        let active = make("active", self.now - Duration::days(1));
        let kept = [
            expired_at_cutoff,
            revoked_at_cutoff,
            revoked_recently,
            expired_recently,
            old_but_active,
            active,
        ];

        for record in doomed.iter().chain(&kept) {
            self.insert(property, record).await;
        }
        let pruned = ok(property, self.store.prune(cutoff)).await;
        for record in &doomed {
            self.expect_gone(
                &format!(
                    "prune removes tokens expired, or revoked, strictly before the cut-off ({})",
                    record.name
                ),
                record,
            )
            .await;
        }
        for record in &kept {
            self.expect_stored(
                &format!("prune keeps what it must ({})", record.name),
                record,
            )
            .await;
        }
        check_eq(
            "prune counts the tokens it removed",
            pruned,
            doomed.len() as u64,
        );
        check_eq(
            "prune again removes nothing",
            ok(property, self.store.prune(cutoff)).await,
            0,
        );
    }
}

/// A random whole hour of the first 300 days of `year`: "now" for an expiry suite, each
/// suite in a year of its own.
fn far_future_now(year: i32) -> OffsetDateTime {
    let id = random_id();
    let hour = u16::from_le_bytes([id.as_bytes()[0], id.as_bytes()[1]]) % (300 * 24);
    utc(year, 1) + Duration::hours(i64::from(hour))
}

impl<St, F> Kit<'_, St, F>
where
    St: ManageTokens + ?Sized,
    F: FnMut(u32) -> St::UserId,
{
    async fn rotation_fields_round_trip(&mut self) {
        let property = "rotated_from and rotated_to round-trip";
        let user = self.user();
        let record = self
            .record(&user, "rotated both ways")
            .with_rotated_from(random_id())
            .with_rotated_to(random_id());
        self.insert(property, &record).await;
        self.expect_stored(property, &record).await;
        let listed = ok(property, self.store.list(&user)).await;
        check_records(property, &listed, std::slice::from_ref(&record));
    }

    async fn list_page_pages_in_order(&mut self) {
        let property = "list_page pages through list's order";
        let user = self.user();
        let other = self.user();
        let mut records = Vec::new();
        for i in 0..7 {
            let mut record = self.record(&user, &format!("page {i}"));
            // Three share a second: the id breaks the tie.
            record.created_at = self.now - Duration::hours(i64::from(i.min(4)));
            records.push(record);
        }
        for record in &records {
            self.insert(property, record).await;
        }
        self.insert(property, &self.record(&other, "not theirs"))
            .await;
        let all = ok(property, self.store.list(&user)).await;
        check_eq(&format!("{property} (count)"), all.len(), records.len());

        let mut paged = Vec::new();
        let mut after: Option<Cursor> = None;
        for _ in 0..10 {
            let page = ok(property, self.store.list_page(&user, after.as_ref(), 3)).await;
            check(property, page.len() <= 3, || {
                format!("a page of 3 held {}", page.len())
            });
            let Some(last) = page.last() else {
                break;
            };
            after = Some(Cursor::new(last.created_at, last.id));
            let done = page.len() < 3;
            paged.extend(page);
            if done {
                break;
            }
        }
        check_records(property, &paged, &all);
        let nobody = self.user();
        check_records(
            "list_page of a user without tokens is empty",
            &ok(property, self.store.list_page(&nobody, None, 3)).await,
            &[],
        );
    }

    async fn insert_limited_keeps_the_cap(&mut self) {
        let property = "insert_limited counts live tokens only";
        let user = self.user();
        let now = self.now;
        let live = self.record(&user, "live");
        let revoked = self
            .record(&user, "revoked")
            .revoked_at(now - Duration::hours(1));
        let mut expired = self.record(&user, "expired");
        expired.expires_at = now;
        let rotated = self.record(&user, "rotated").with_rotated_to(random_id());
        for record in [&live, &revoked, &expired, &rotated] {
            self.insert(property, record).await;
        }
        let second = self.record(&user, "second live");
        check(
            property,
            ok(property, self.store.insert_limited(second.clone(), 2, now)).await,
            || "the second live token was refused under a cap of 2".to_owned(),
        );
        self.expect_stored(property, &second).await;

        let property = "insert_limited stores nothing at the cap";
        let third = self.record(&user, "third live");
        check(
            property,
            !ok(property, self.store.insert_limited(third.clone(), 2, now)).await,
            || "a third live token was stored under a cap of 2".to_owned(),
        );
        self.expect_gone(property, &third).await;

        let property = "concurrent insert_limited calls leave exactly the cap";
        let user = self.user();
        let records: Vec<_> = (0..20)
            .map(|i| self.record(&user, &format!("capped {i}")))
            .collect();
        let outcomes = join_all(
            records
                .iter()
                .map(|r| self.store.insert_limited(r.clone(), 5, now)),
        )
        .await;
        let mut stored = 0;
        for outcome in outcomes {
            if ok(property, std::future::ready(outcome)).await {
                stored += 1;
            }
        }
        check_eq(property, stored, 5);
        check_eq(
            property,
            ok(property, self.store.list(&user)).await.len(),
            5,
        );
    }

    async fn rotate_is_one_step(&mut self) {
        let property = "rotate stores the successor and marks the old token";
        let user = self.user();
        let intruder = self.user();
        let at = self.now;
        let old = self.record(&user, "to rotate");
        self.insert(property, &old).await;
        let successor = self.record(&user, "to rotate").with_rotated_from(old.id);
        let overlap_end = at + Duration::hours(1);

        check_eq(
            "rotate of another user's token is NotFound",
            ok(
                property,
                self.store
                    .rotate(&intruder, old.id, successor.clone(), overlap_end, at),
            )
            .await,
            Rotated::NotFound,
        );
        self.expect_gone("rotate of another user's token stores nothing", &successor)
            .await;
        self.expect_stored("rotate of another user's token changes nothing", &old)
            .await;

        let mut want = old
            .clone()
            .with_rotated_to(successor.id)
            .with_updated_at(at);
        want.expires_at = overlap_end;
        match ok(
            property,
            self.store
                .rotate(&user, old.id, successor.clone(), overlap_end, at),
        )
        .await
        {
            Rotated::Rotated(previous) => check_record(property, &previous, &want),
            other => fail(property, format_args!("got {other:?}")),
        }
        self.expect_stored(property, &want).await;
        self.expect_stored(property, &successor).await;

        let property = "rotating again names the successor and stores nothing";
        let second = self.record(&user, "to rotate").with_rotated_from(old.id);
        check_eq(
            property,
            ok(
                property,
                self.store.rotate(&user, old.id, second.clone(), at, at),
            )
            .await,
            Rotated::AlreadyRotated(successor.id),
        );
        self.expect_gone(property, &second).await;
        self.expect_stored(property, &want).await;

        let property = "rotate never extends the old token's expiry";
        let short = self.record(&user, "short");
        self.insert(property, &short).await;
        let next = self.record(&user, "short").with_rotated_from(short.id);
        let mut want = short.clone().with_rotated_to(next.id).with_updated_at(at);
        want.expires_at = short.expires_at;
        let later = short.expires_at + Duration::days(30);
        match ok(
            property,
            self.store.rotate(&user, short.id, next, later, at),
        )
        .await
        {
            Rotated::Rotated(previous) => check_record(property, &previous, &want),
            other => fail(property, format_args!("got {other:?}")),
        }

        let property = "rotate with no overlap revokes the old token";
        let abrupt = self.record(&user, "abrupt");
        self.insert(property, &abrupt).await;
        let next = self.record(&user, "abrupt").with_rotated_from(abrupt.id);
        let mut want = abrupt.clone().with_rotated_to(next.id).revoked_at(at);
        want.expires_at = at;
        match ok(property, self.store.rotate(&user, abrupt.id, next, at, at)).await {
            Rotated::Rotated(previous) => check_record(property, &previous, &want),
            other => fail(property, format_args!("got {other:?}")),
        }
        self.expect_stored(property, &want).await;

        let property = "rotate of a revoked or expired token is Inactive and stores nothing";
        let revoked = self
            .record(&user, "revoked")
            .revoked_at(at - Duration::hours(1));
        let mut expired = self.record(&user, "expired");
        expired.expires_at = at;
        for old in [&revoked, &expired] {
            self.insert(property, old).await;
            let next = self.record(&user, "never").with_rotated_from(old.id);
            check_eq(
                property,
                ok(
                    property,
                    self.store
                        .rotate(&user, old.id, next.clone(), overlap_end, at),
                )
                .await,
                Rotated::Inactive,
            );
            self.expect_gone(property, &next).await;
            self.expect_stored(property, old).await;
        }
        check_eq(
            "rotate of an unknown id is NotFound",
            ok(
                property,
                self.store.rotate(
                    &user,
                    random_id(),
                    self.record(&user, "orphan"),
                    overlap_end,
                    at,
                ),
            )
            .await,
            Rotated::NotFound,
        );
    }

    async fn concurrent_rotations_have_one_winner(&mut self) {
        let property = "concurrent rotations of one token: exactly one succeeds";
        let user = self.user();
        let old = self.record(&user, "raced rotation");
        self.insert(property, &old).await;
        let successors: Vec<_> = (0..10)
            .map(|_| {
                self.record(&user, "raced rotation")
                    .with_rotated_from(old.id)
            })
            .collect();
        let at = self.now;
        let outcomes = join_all(successors.iter().map(|s| {
            self.store
                .rotate(&user, old.id, s.clone(), at + Duration::minutes(5), at)
        }))
        .await;
        let mut winners = Vec::new();
        for (successor, outcome) in successors.iter().zip(outcomes) {
            match outcome {
                Ok(Rotated::Rotated(_)) => winners.push(successor.id),
                Ok(Rotated::AlreadyRotated(_)) => {}
                Ok(other) => fail(property, format_args!("a rotation said {other:?}")),
                Err(err) => fail(property, format_args!("the store failed: {err}")),
            }
        }
        check_eq(property, winners.len(), 1);
        let stored = ok(property, self.store.list(&user)).await;
        let stored_successors: Vec<TokenId> = stored
            .iter()
            .filter(|r| r.rotated_from == Some(old.id))
            .map(|r| r.id)
            .collect();
        check_eq(
            "concurrent rotations store one successor",
            stored_successors,
            winners.clone(),
        );
        let old_now = self.get(property, old.id).await;
        check_eq(
            "the old token names the one successor",
            old_now.and_then(|r| r.rotated_to),
            winners.first().copied(),
        );
    }

    async fn expiring_pages_soonest_first(&mut self) {
        let property = "expiring lists live tokens expiring within the window, soonest first";
        let now = far_future_now(2500);
        let until = now + Duration::hours(4);
        let user = self.user();
        let make = |name: &str, expires_at: OffsetDateTime| {
            let mut record = self.record(&user, name);
            record.created_at = now - Duration::days(1);
            record.updated_at = record.created_at;
            record.expires_at = expires_at;
            record
        };
        let soon = make("in an hour", now + Duration::hours(1));
        let tie_a = make("in two hours", now + Duration::hours(2));
        let tie_b = make("in two hours too", now + Duration::hours(2));
        let at_end = make("at the window's end", until);
        let later = make("after the window", until + Duration::seconds(1));
        let expired = make("expired at now", now);
        let revoked =
            make("revoked", now + Duration::hours(1)).revoked_at(now - Duration::hours(1));
        let rotated = make("rotated", now + Duration::hours(1)).with_rotated_to(random_id());
        for record in [
            &soon, &tie_a, &tie_b, &at_end, &later, &expired, &revoked, &rotated,
        ] {
            self.insert(property, record).await;
        }
        let mut ties = [tie_a, tie_b];
        ties.sort_by_key(|r| r.id);
        let want = [soon, ties[0].clone(), ties[1].clone(), at_end];

        let mut got = Vec::new();
        let mut after: Option<Cursor> = None;
        for _ in 0..10 {
            let page = ok(property, self.store.expiring(now, until, after.as_ref(), 2)).await;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(Cursor::new(last.expires_at, last.id));
            let done = page.len() < 2;
            got.extend(page);
            if done {
                break;
            }
        }
        check_records(property, &got, &want);
    }

    async fn expiry_notices_are_claimed_once(&mut self) {
        let property = "claim_expiry_notices claims each token once per threshold";
        let now = far_future_now(2600);
        let user = self.user();
        let make = |name: &str, expires_at: OffsetDateTime| {
            let mut record = self.record(&user, name);
            record.created_at = now - Duration::days(100);
            record.updated_at = record.created_at;
            record.expires_at = expires_at;
            record
        };
        let in_five_days = make("in five days", now + Duration::days(5));
        let in_twenty_days = make("in twenty days", now + Duration::days(20));
        let in_forty_days = make("in forty days", now + Duration::days(40));
        let revoked = make("revoked", now + Duration::days(5)).revoked_at(now - Duration::days(1));
        let rotated = make("rotated", now + Duration::days(5)).with_rotated_to(random_id());
        for record in [
            &in_five_days,
            &in_twenty_days,
            &in_forty_days,
            &revoked,
            &rotated,
        ] {
            self.insert(property, record).await;
        }
        let ids = |records: Vec<TokenRecord<St::UserId>>| {
            records.into_iter().map(|r| r.id).collect::<Vec<_>>()
        };
        let week = Duration::days(7);
        let month = Duration::days(30);
        let day = Duration::days(1);
        check_eq(
            property,
            ids(ok(property, self.store.claim_expiry_notices(week, now, 100)).await),
            vec![in_five_days.id],
        );
        check_eq(
            "a claim again finds nothing new",
            ids(ok(property, self.store.claim_expiry_notices(week, now, 100)).await),
            vec![],
        );
        check_eq(
            "a longer threshold skips what a shorter one claimed",
            ids(ok(property, self.store.claim_expiry_notices(month, now, 100)).await),
            vec![in_twenty_days.id],
        );
        check_eq(
            "a shorter threshold claims again once it applies",
            ids(ok(property, self.store.claim_expiry_notices(day, now, 100)).await),
            vec![],
        );
        let later = now + Duration::days(4) + Duration::hours(1);
        check_eq(
            "a shorter threshold claims again once it applies",
            ids(ok(property, self.store.claim_expiry_notices(day, later, 100)).await),
            vec![in_five_days.id],
        );
        check_eq(
            "a shorter threshold claims once too",
            ids(ok(property, self.store.claim_expiry_notices(day, later, 100)).await),
            vec![],
        );

        let property = "concurrent claims never hand out a token twice";
        let now = far_future_now(2700);
        let user = self.user();
        let mut want = Vec::new();
        for i in 0..6 {
            let mut record = self.record(&user, &format!("claimed {i}"));
            record.created_at = now - Duration::days(10);
            record.updated_at = record.created_at;
            record.expires_at = now + Duration::hours(i + 1);
            self.insert(property, &record).await;
            want.push(record.id);
        }
        let outcomes = join_all((0..8).map(|_| self.store.claim_expiry_notices(day, now, 2))).await;
        let mut got = Vec::new();
        for outcome in outcomes {
            got.extend(ids(ok(property, std::future::ready(outcome)).await));
        }
        // Claims that found everything taken end early; claim what is left, if anything.
        loop {
            let more = ids(ok(property, self.store.claim_expiry_notices(day, now, 2)).await);
            if more.is_empty() {
                break;
            }
            got.extend(more);
        }
        got.sort();
        want.sort();
        check_eq(property, got, want);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Lookup, MemoryStore};

    fn block_on<F: Future>(f: F) -> F::Output {
        futures_util::FutureExt::now_or_never(Box::pin(f)).expect("MemoryStore never waits")
    }

    #[test]
    fn the_memory_store_conforms() {
        block_on(
            Conformance::new(i64::from)
                .client_id(true)
                .last_used(true)
                .manage_tokens(&MemoryStore::<i64>::new()),
        );
    }

    #[test]
    fn string_user_ids_work_too() {
        block_on(
            Conformance::new(|n| format!("user-{n}")).manage_tokens(&MemoryStore::<String>::new()),
        );
    }

    /// A store that forgets to check the owner on revoke.
    struct Careless(MemoryStore<i64>);

    #[async_trait::async_trait]
    impl crate::store::TokenStore for Careless {
        type UserId = i64;
        async fn find(&self, hash: &TokenHash) -> Lookup<i64> {
            self.0.find(hash).await
        }
    }

    #[async_trait::async_trait]
    impl ManageTokens for Careless {
        async fn insert(&self, record: TokenRecord<i64>) -> Result<(), StoreError> {
            self.0.insert(record).await
        }
        async fn get(&self, id: TokenId) -> Result<Option<TokenRecord<i64>>, StoreError> {
            self.0.get(id).await
        }
        async fn list(&self, user: &i64) -> Result<Vec<TokenRecord<i64>>, StoreError> {
            self.0.list(user).await
        }
        async fn revoke(
            &self,
            _user: &i64,
            id: TokenId,
            at: OffsetDateTime,
        ) -> Result<Revoked, StoreError> {
            match self.0.get(id).await? {
                Some(r) => self.0.revoke(&r.user_id, id, at).await,
                None => Ok(Revoked::NotFound),
            }
        }
        async fn revoke_all(&self, user: &i64, at: OffsetDateTime) -> Result<u64, StoreError> {
            self.0.revoke_all(user, at).await
        }
        async fn delete(&self, user: &i64, id: TokenId) -> Result<bool, StoreError> {
            self.0.delete(user, id).await
        }
        async fn prune(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
            self.0.prune(before).await
        }
    }

    /// A find-only store over a map: what a README-style store is.
    struct FindOnly(MemoryStore<i64>);

    #[async_trait::async_trait]
    impl TokenStore for FindOnly {
        type UserId = i64;
        async fn find(&self, hash: &TokenHash) -> Lookup<i64> {
            self.0.find(hash).await
        }
    }

    #[test]
    fn a_find_only_store_is_checked_through_the_callers_insert() {
        let store = FindOnly(MemoryStore::new());
        let inner = &store.0;
        block_on(
            Conformance::new(i64::from).token_store(&store, |record| async move {
                inner.insert(record).await.unwrap();
            }),
        );
    }

    /// A store that drops the sub-second part and the offset of `expires_at` wrongly: it
    /// keeps the wall clock of the offset as if it were UTC.
    struct Shifty(MemoryStore<i64>);

    #[async_trait::async_trait]
    impl TokenStore for Shifty {
        type UserId = i64;
        async fn find(&self, hash: &TokenHash) -> Lookup<i64> {
            Ok(self.0.find(hash).await?.map(|r| {
                let mut r = TokenRecord::clone(&r);
                r.expires_at = r.expires_at.replace_offset(time::UtcOffset::UTC);
                std::sync::Arc::new(r)
            }))
        }
    }

    #[test]
    #[should_panic(expected = "field expires_at: got")]
    fn a_failure_names_the_field() {
        let store = Shifty(MemoryStore::new());
        let inner = &store.0;
        block_on(
            Conformance::new(i64::from).token_store(&store, |record| async move {
                inner.insert(record).await.unwrap();
            }),
        );
    }

    #[test]
    #[should_panic(
        expected = "tower-pat conformance: revoke of another user's token changes nothing"
    )]
    fn a_careless_store_fails_naming_the_property() {
        block_on(Conformance::new(i64::from).manage_tokens(&Careless(MemoryStore::new())));
    }
}
