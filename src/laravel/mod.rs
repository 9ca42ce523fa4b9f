//! Beside an existing Laravel application (feature `laravel`): accept the Sanctum and
//! Passport personal access tokens it already issued.
//!
//! - [`SanctumFormat`]: the shape of Sanctum's `id|secret` tokens, every generation of them;
//!   the layer looks them up by the SHA-256 of the secret, Sanctum's `token` column.
//! - [`PassportFormat`]: Passport's personal access tokens, RS256 JWTs verified offline with
//!   the application's public key; the layer hands a store the verified
//!   [`PassportClaims`], and the store finds the row by `jti`.
//!
//! Turn them on with [`PatLayer::accept`](crate::PatLayer::accept); a layer keeps accepting
//! the crate's own `pat_…` tokens. [`LaravelStore`] (with feature `mysql`, `postgres` or `sqlite`)
//! reads the application's own tables.

#[cfg(any(feature = "mysql", feature = "postgres", feature = "sqlite"))]
mod feed;
mod passport;
mod sanctum;
#[cfg(any(feature = "mysql", feature = "postgres", feature = "sqlite"))]
mod store;

#[cfg(all(
    feature = "cache",
    any(feature = "mysql", feature = "postgres", feature = "sqlite")
))]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub use feed::ChangeFollower;
#[cfg(any(feature = "mysql", feature = "postgres", feature = "sqlite"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "mysql", feature = "postgres", feature = "sqlite")))
)]
pub use feed::{LARAVEL_CHANGES, LARAVEL_CHANNEL};
pub use passport::{InvalidPublicKey, MAX_JWT_LEN, PassportClaims, PassportError, PassportFormat};
pub use sanctum::{DEFAULT_MAX_SECRET_LEN, MIN_SECRET_LEN, SanctumFormat, SanctumToken};
#[cfg(any(feature = "mysql", feature = "postgres", feature = "sqlite"))]
pub use store::{DEFAULT_OWNER_TYPE, LaravelPool, LaravelStore};
