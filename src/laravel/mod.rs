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
//! the crate's own `pat_…` tokens. The store that reads the application's own tables is
//! `store::laravel::LaravelStore` (with feature `mysql`, `postgres` or `sqlite`), beside
//! the crate's other stores.

mod passport;
mod sanctum;

pub use passport::{InvalidPublicKey, MAX_JWT_LEN, PassportClaims, PassportError, PassportFormat};
pub use sanctum::{DEFAULT_MAX_SECRET_LEN, MIN_SECRET_LEN, SanctumFormat, SanctumToken};
