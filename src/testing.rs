//! The conformance kit: one suite that checks any [`ManageTokens`] store for the behaviour
//! [`PatLayer`](crate::PatLayer) and [`Tokens`](crate::Tokens) rely on.
//!
//! Run it from a test of your own store, on a store of its own (an empty table, a test
//! database). It needs no particular runtime: it only awaits the store's futures.
//!
//! ```
//! use tower_pat::{MemoryStore, testing::conformance};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! // `users` hands out user ids no token in the store belongs to yet.
//! conformance(&MemoryStore::<i64>::new(), |n| i64::from(n) + 1).await;
//! # });
//! ```
//!
//! Each property that fails panics with a message naming it, e.g.
//! `tower-pat conformance: revoke of another user's token changes nothing: …`.
//!
//! What it checks:
//!
//! - `find` by hash returns the record exactly (every field; scopes with every character
//!   RFC 6749 allows, names with quotes and non-ASCII, timestamps given with a non-UTC
//!   offset come back as the same instant, to the second); an unknown hash is `None`;
//!   revoked and expired records are found too, flags intact; `find_now`, when it
//!   answers, agrees with `find`.
//! - `get` finds a token by id, whoever owns it.
//! - `list` returns only that user's tokens, oldest first, ties by id.
//! - `revoke` of the user's own token says `Revoked` and sets `updated_at`; again says
//!   `AlreadyRevoked` and changes nothing; of another user's token (or an unknown id) says
//!   `NotFound` and changes nothing; ten concurrent revokes of one token: exactly one wins.
//! - `revoke_all` revokes the user's active tokens, counts them, and touches no one else's.
//! - `delete` removes only the user's own token.
//! - `touch` sets `last_used_at` and nothing else; an unknown id is not an error.
//! - `insert` of a duplicate hash or id is a [`StoreErrorKind::Conflict`] and stores
//!   nothing; fifty concurrent inserts all land, none lost or mixed up.
//! - `prune` removes what expired, and what was revoked, at or before the cut-off, and
//!   keeps the rest (active tokens, recently revoked ones, ones expired after the
//!   cut-off); it counts what it removed. Its records are dated around the year 2000, so a
//!   store holding real tokens loses none to it — still, do not point it at production.

use std::{fmt, future::Future};

use futures_util::future::join_all;
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::{
    record::{TokenId, TokenRecord},
    scope::Scopes,
    store::{ManageTokens, Revoked, StoreError, StoreErrorKind},
    token::TokenHash,
};

/// Runs the whole suite against `store`.
///
/// `users` gives user ids of the store's type: it is called with `0, 1, 2, …` (below
/// 64), once each, and must return distinct ids that own no token in the store yet — say
/// `|n| i64::from(n) + 1` on an empty table, or `|_| Uuid::new_v4()`.
///
/// The store is left holding the records the suite made (about a hundred).
///
/// # Panics
///
/// On the first property the store fails, with a message that names it; on any store
/// error too (the store under test must not fail).
pub async fn conformance<S, F>(store: &S, users: F)
where
    S: ManageTokens + ?Sized,
    F: FnMut(u32) -> S::UserId,
{
    let mut kit = Kit {
        store,
        users,
        next_user: 0,
        now: OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("0 is a valid nanosecond"),
    };
    kit.find_round_trips().await;
    kit.list_is_per_user_oldest_first().await;
    kit.revoke_is_per_user().await;
    kit.concurrent_revokes_have_one_winner().await;
    kit.revoke_all_is_per_user().await;
    kit.delete_is_per_user().await;
    kit.touch_sets_last_used_at().await;
    kit.duplicates_conflict().await;
    kit.concurrent_inserts_do_not_collide().await;
    kit.prune_keeps_what_it_must().await;
}

struct Kit<'s, S: ?Sized, F> {
    store: &'s S,
    users: F,
    next_user: u32,
    now: OffsetDateTime,
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
        fail(property, format_args!("got {got:#?}\nwant {want:#?}"));
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

/// Every character RFC 6749 allows in a scope name, and then some length.
fn odd_scopes() -> Scopes {
    let every_char: String = (0x21u8..=0x7e)
        .filter(|b| *b != b'"' && *b != b'\\')
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

impl<S, F> Kit<'_, S, F>
where
    S: ManageTokens + ?Sized,
    F: FnMut(u32) -> S::UserId,
{
    fn user(&mut self) -> S::UserId {
        let n = self.next_user;
        self.next_user += 1;
        (self.users)(n)
    }

    /// An active record: created a day ago, expiring in a year.
    fn record(&self, user: &S::UserId, name: &str) -> TokenRecord<S::UserId> {
        let created = self.now - Duration::days(1);
        TokenRecord {
            id: random_id(),
            user_id: user.clone(),
            client_id: None,
            name: name.to_owned(),
            scopes: Scopes::try_from_iter(["orders:read"]).unwrap_or_else(|err| fail("setup", err)),
            token_hash: random_hash(),
            revoked: false,
            created_at: created,
            updated_at: created,
            expires_at: self.now + Duration::days(365),
            last_used_at: None,
        }
    }

    async fn insert(&self, property: &str, record: &TokenRecord<S::UserId>) {
        ok(property, self.store.insert(record.clone())).await;
    }

    async fn get(&self, property: &str, id: TokenId) -> Option<TokenRecord<S::UserId>> {
        ok(property, self.store.get(id)).await
    }

    /// `find` by the record's hash returns exactly the record, and so does `get`.
    async fn expect_stored(&self, property: &str, record: &TokenRecord<S::UserId>) {
        let found = ok(property, self.store.find(&record.token_hash)).await;
        match found {
            Some(found) => check_eq(property, &*found, record),
            None => fail(
                property,
                format_args!("find of token {} found nothing", record.id),
            ),
        }
        if let Some(now) = self.store.find_now(&record.token_hash) {
            match now {
                Ok(Some(found)) => check_eq(
                    &format!("{property} (find_now agrees with find)"),
                    &*found,
                    record,
                ),
                Ok(None) => fail(
                    property,
                    format_args!("find_now of token {} found nothing", record.id),
                ),
                Err(err) => fail(property, format_args!("find_now failed: {err}")),
            }
        }
        check_eq(
            &format!("{property} (get by id)"),
            self.get(property, record.id).await.as_ref(),
            Some(record),
        );
    }

    async fn expect_gone(&self, property: &str, record: &TokenRecord<S::UserId>) {
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

    async fn find_round_trips(&mut self) {
        let user = self.user();
        let other = self.user();

        let property = "find returns the stored record exactly";
        let plus = UtcOffset::from_hms(5, 30, 0).unwrap_or_else(|err| fail("setup", err));
        let minus = UtcOffset::from_hms(-3, 0, 0).unwrap_or_else(|err| fail("setup", err));
        let mut full = self.record(&user, "Laptop “main” — 'ünïcode' ✓ \"quoted\" \\ back");
        full.client_id = Some("client-1".to_owned());
        full.scopes = odd_scopes();
        full.created_at = (self.now - Duration::days(3)).to_offset(plus);
        full.updated_at = (self.now - Duration::days(2)).to_offset(minus);
        full.expires_at = (self.now + Duration::days(30)).to_offset(plus);
        full.last_used_at = Some((self.now - Duration::hours(5)).to_offset(minus));
        self.insert(property, &full).await;
        self.expect_stored(
            "find returns the stored record exactly (scopes, name, client, timestamps with offset)",
            &full,
        )
        .await;

        let property = "the empty scope set round-trips";
        let mut bare = self.record(&other, "bare");
        bare.scopes = Scopes::empty();
        self.insert(property, &bare).await;
        self.expect_stored(property, &bare).await;

        let property = "a revoked record is found, flag intact";
        let mut revoked = self.record(&user, "revoked");
        revoked.revoked = true;
        revoked.updated_at = self.now;
        self.insert(property, &revoked).await;
        self.expect_stored(property, &revoked).await;

        let property = "an expired record is found, expiry intact";
        let mut expired = self.record(&user, "expired");
        expired.expires_at = self.now - Duration::hours(1);
        self.insert(property, &expired).await;
        self.expect_stored(property, &expired).await;
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
        if let Some(Ok(Some(_))) = self.store.find_now(&random_hash()) {
            fail(
                property,
                "find_now of a hash never stored returned a record",
            );
        }
        let property = "an unknown id is None";
        check(
            property,
            self.get(property, random_id()).await.is_none(),
            || "get of an id never stored returned a record".to_owned(),
        );
    }

    async fn list_is_per_user_oldest_first(&mut self) {
        let property = "list returns the user's tokens only, oldest first, ties by id";
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

        mine.sort_by_key(|r| (r.created_at, r.id));
        check_eq(property, ok(property, self.store.list(&user)).await, mine);
        check_eq(
            property,
            ok(property, self.store.list(&other)).await,
            vec![theirs],
        );
        let nobody = self.user();
        check_eq(
            "list of a user without tokens is empty",
            ok(property, self.store.list(&nobody)).await,
            Vec::new(),
        );
    }

    async fn revoke_is_per_user(&mut self) {
        let owner = self.user();
        let intruder = self.user();
        let mut token = self.record(&owner, "revoke me");
        token.last_used_at = Some(self.now - Duration::minutes(3));
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
        check_eq(
            property,
            ok(property, self.store.list(&owner)).await,
            Vec::new(),
        );

        let property = "deleting twice says nothing went";
        check(
            property,
            !ok(property, self.store.delete(&owner, token.id)).await,
            || "the second delete said it deleted".to_owned(),
        );
        self.expect_stored("delete leaves other users' tokens alone", &theirs)
            .await;
    }

    async fn touch_sets_last_used_at(&mut self) {
        let property = "touch sets last_used_at and nothing else";
        let user = self.user();
        let token = self.record(&user, "touch me");
        self.insert(property, &token).await;
        let mut touched = token.clone();
        for at in [self.now - Duration::seconds(30), self.now] {
            ok(property, self.store.touch(token.id, at)).await;
            touched.last_used_at = Some(at);
            self.expect_stored(property, &touched).await;
        }
        ok(
            "touch of an unknown id is not an error",
            self.store.touch(random_id(), self.now),
        )
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
        check_eq(
            property,
            ok(property, self.store.list(&other)).await,
            Vec::new(),
        );
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

    async fn expect_conflict(&self, property: &str, record: &TokenRecord<S::UserId>) {
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
        check_eq(property, listed, want);
        let found = join_all(records.iter().map(|r| self.store.find(&r.token_hash))).await;
        for (record, found) in records.iter().zip(found) {
            match found {
                Ok(Some(found)) => check_eq(property, &*found, record),
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
        let mut expired_at_cutoff = make("expired at the cut-off", cutoff - Duration::days(40));
        expired_at_cutoff.expires_at = cutoff;
        let mut revoked = make("revoked long ago", cutoff - Duration::days(40));
        revoked.revoked = true;
        revoked.updated_at = cutoff - Duration::days(5);
        let mut revoked_at_cutoff = make("revoked at the cut-off", cutoff - Duration::days(40));
        revoked_at_cutoff.revoked = true;
        revoked_at_cutoff.updated_at = cutoff;
        let doomed = [expired, expired_at_cutoff, revoked, revoked_at_cutoff];

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
        let kept = [revoked_recently, expired_recently, old_but_active, active];

        for record in doomed.iter().chain(&kept) {
            self.insert(property, record).await;
        }
        let pruned = ok(property, self.store.prune(cutoff)).await;
        for record in &doomed {
            self.expect_gone(
                &format!(
                    "prune removes tokens expired, or revoked, at or before the cut-off ({})",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn block_on<F: Future>(f: F) -> F::Output {
        futures_util::FutureExt::now_or_never(Box::pin(f)).expect("MemoryStore never waits")
    }

    #[test]
    fn the_memory_store_conforms() {
        block_on(conformance(&MemoryStore::<i64>::new(), i64::from));
    }

    #[test]
    fn string_user_ids_work_too() {
        block_on(conformance(&MemoryStore::<String>::new(), |n| {
            format!("user-{n}")
        }));
    }

    /// A store that forgets to check the owner on revoke.
    struct Careless(MemoryStore<i64>);

    #[async_trait::async_trait]
    impl crate::TokenStore for Careless {
        type UserId = i64;
        async fn find(&self, hash: &TokenHash) -> Result<crate::store::Found<i64>, StoreError> {
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

    #[test]
    #[should_panic(
        expected = "tower-pat conformance: revoke of another user's token changes nothing"
    )]
    fn a_careless_store_fails_naming_the_property() {
        block_on(conformance(&Careless(MemoryStore::new()), i64::from));
    }
}
