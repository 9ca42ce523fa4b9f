//! The admin command line (feature `cli`): a `clap` subcommand the application flattens
//! into its own binary, as artisan commands run inside a Laravel application, so that it
//! runs with the application's own scope registry, grant policy and store.
//!
//! ```
//! use clap::Parser;
//! use tower_pat::{MemoryStore, Tokens, cli::TokensCommand, scope::ScopeRegistry};
//!
//! /// The application's command line: its server, and `tokens …`.
//! #[derive(Parser)]
//! enum App {
//!     /// Serve the API.
//!     Serve,
//!     /// Manage personal access tokens.
//!     #[command(subcommand)]
//!     Tokens(TokensCommand),
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let tokens = Tokens::new(MemoryStore::<i64>::new(), ScopeRegistry::new().scope("ci", "Deploy"));
//!
//! // `app tokens create --user 7 --name deploy --scopes ci --expires-in 30d`
//! let App::Tokens(create) = App::parse_from([
//!     "app", "tokens", "create", "--user", "7", "--name", "deploy", "--scopes", "ci",
//!     "--expires-in", "30d",
//! ]) else { unreachable!() };
//! let mut out = Vec::new();
//! create.execute(&tokens, &mut out).await.unwrap();
//! // The plaintext and a line break: nothing else, so `TOKEN=$(app tokens create …)` works.
//! let plaintext = String::from_utf8(out).unwrap();
//! assert!(plaintext.starts_with("pat_") && plaintext.ends_with('\n'));
//!
//! // `app tokens list --user 7 --json`: never a secret.
//! let App::Tokens(list) = App::parse_from(["app", "tokens", "list", "--user", "7", "--json"])
//! else { unreachable!() };
//! let mut out = Vec::new();
//! list.execute(&tokens, &mut out).await.unwrap();
//! let listed: serde_json::Value = serde_json::from_slice(&out).unwrap();
//! assert_eq!(listed[0]["name"], "deploy");
//! assert!(!String::from_utf8(out).unwrap().contains(plaintext.trim()));
//!
//! // An undefined scope: refused, and named.
//! let App::Tokens(bad) = App::parse_from([
//!     "app", "tokens", "create", "--user", "7", "--name", "x", "--scopes", "admin",
//! ]) else { unreachable!() };
//! let error = bad.execute(&tokens, &mut Vec::new()).await.unwrap_err();
//! assert!(error.to_string().contains("\"admin\""));
//! # });
//! ```
//!
//! In `main`, [`TokensCommand::run`] does the same on the process's standard output, and
//! prints a failure as one line on standard error: return its [`ExitCode`].
//!
//! # The commands
//!
//! | command | prints on standard output |
//! |---|---|
//! | `create --user U --name N [--scopes a,b] [--expires-in 30d] [--json]` | the plaintext, once, and nothing else (`--json`: an object with it, the id and the expiry) |
//! | `list [--user U] [--json]` | the user's tokens, revoked and expired ones included; without `--user`, every user's live tokens. Never a secret, nor a hash |
//! | `revoke --user U --id ID` | what happened (revoked, or revoked already) |
//! | `revoke-all --user U` | how many were revoked |
//! | `rotate --user U --id ID [--overlap 10m] [--json]` | the successor's plaintext, once (the old token works on for the overlap; none by default) |
//! | `prune --older-than 30d` | how many tokens expired or revoked before then were deleted |
//! | `expiring --within 7d [--json]` | every user's live tokens expiring within that time, soonest first |
//! | `migrate` | creates or updates the store's table ([`Migrate`]) |
//! | `schema` | the store's SQL, for a migration tool of your own |
//!
//! Durations are a number and a unit, `s`, `m`, `h`, `d` or `w`, and may be chained:
//! `90s`, `10m`, `12h`, `30d`, `1d12h` ([`parse_duration`]). User ids are parsed with the
//! store's user id type's `FromStr`, and printed with its `Display`. Every change is
//! written to the audit trail with [`AUDIT_SOURCE`] as its source.
//!
//! # Failures
//!
//! One line on standard error, starting `error: `, and exit status 1 ([`CliError`]): the
//! database cannot be reached, its table is missing (run `migrate`), a scope is not
//! defined (named), a token id is not the user's, a user id does not parse. Mistakes in
//! the command itself (an unknown option, a malformed token id or duration) are clap's:
//! its usage message and exit status 2.

use std::{
    error::Error,
    fmt::{self, Display},
    io::{self, Write},
    process::ExitCode,
    str::FromStr,
    sync::Arc,
};

use clap::Subcommand;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    lifecycle::{MAX_PAGE_SIZE, Page, TokenError, Tokens},
    record::{TokenId, TokenRecord},
    scope::ScopeError,
    store::{ManageTokens, MemoryStore, Revoked, StoreError, StoreErrorKind},
};

/// The source the command line's audit events carry
/// ([`Tokens::audit_source`]).
pub const AUDIT_SOURCE: &str = "cli";

/// The token commands: flatten them into the application's own command line (as a
/// subcommand, `#[command(subcommand)]`) and run them with its [`Tokens`]
/// ([`run`](Self::run)). See the [module](self) for each command's output.
#[derive(Clone, Debug, Subcommand)]
#[non_exhaustive]
pub enum TokensCommand {
    /// Create a token and print its plaintext, once, and nothing else.
    Create {
        /// Whose token it is.
        #[arg(long)]
        user: String,
        /// Its name, for people.
        #[arg(long)]
        name: String,
        /// Its scopes, comma-separated (default: the registry's default scopes).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Its lifetime, such as 30d or 12h (default: the application's).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        expires_in: Option<Duration>,
        /// Print a JSON object: the plaintext, the id and the expiry.
        #[arg(long)]
        json: bool,
    },
    /// List a user's tokens (revoked and expired ones too), or every user's live tokens.
    List {
        /// Whose tokens (default: every user's live tokens).
        #[arg(long)]
        user: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Revoke one of a user's tokens.
    Revoke {
        /// Whose token it is.
        #[arg(long)]
        user: String,
        /// The token's id (32 hex digits, as `list` shows it).
        #[arg(long)]
        id: TokenId,
    },
    /// Revoke every token of a user.
    RevokeAll {
        /// Whose tokens.
        #[arg(long)]
        user: String,
    },
    /// Replace a token with a new one and print the new plaintext, once.
    Rotate {
        /// Whose token it is.
        #[arg(long)]
        user: String,
        /// The token's id.
        #[arg(long)]
        id: TokenId,
        /// How long the old token keeps working, such as 10m (default: it stops now).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION", default_value = "0s")]
        overlap: Duration,
        /// Print a JSON object: the new plaintext, its id, and the old token's id.
        #[arg(long)]
        json: bool,
    },
    /// Delete tokens that expired, or were revoked, longer ago than a duration.
    Prune {
        /// How long expired and revoked tokens are kept, such as 30d.
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        older_than: Duration,
    },
    /// List every user's live tokens that expire within a duration, soonest first.
    Expiring {
        /// The window, such as 7d.
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        within: Duration,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Create the token table, or bring it up to date (safe to run again).
    Migrate,
    /// Print the token table's SQL.
    Schema,
}

impl TokensCommand {
    /// Runs the command on the process's standard output, and prints a failure as one
    /// line on standard error: the exit code to return from `main`.
    ///
    /// ```no_run
    /// use std::process::ExitCode;
    /// use clap::Parser;
    /// use tower_pat::{SqliteStore, Tokens, cli::{CliError, TokensCommand}, scope::ScopeRegistry};
    ///
    /// #[derive(Parser)]
    /// struct App {
    ///     #[command(subcommand)]
    ///     tokens: TokensCommand,
    /// }
    ///
    /// #[tokio::main]
    /// async fn main() -> ExitCode {
    ///     let app = App::parse();
    ///     let store = match SqliteStore::<i64>::open("tokens.sqlite3").await {
    ///         Ok(store) => store,
    ///         Err(e) => return CliError::unreachable(e).report(),
    ///     };
    ///     let tokens = Tokens::new(store, ScopeRegistry::new().scope("ci", "Deploy"));
    ///     app.tokens.run(&tokens).await
    /// }
    /// ```
    pub async fn run<St>(&self, tokens: &Tokens<St>) -> ExitCode
    where
        St: ManageTokens + Migrate,
        St::UserId: FromStr + Display,
        <St::UserId as FromStr>::Err: Display,
    {
        let mut out = Vec::new();
        let result = self.execute(tokens, &mut out).await;
        // What was written stays written, even before a failure (a page of a list).
        let written = io::stdout()
            .write_all(&out)
            .and_then(|()| io::stdout().flush());
        match (result, written) {
            (Err(e), _) => e.report(),
            (Ok(()), Err(e)) => CliError::output(e).report(),
            (Ok(()), Ok(())) => ExitCode::SUCCESS,
        }
    }

    /// Runs the command, writing its output to `out`: what [`run`](Self::run) does,
    /// for a test or an application that prints elsewhere.
    ///
    /// # Errors
    ///
    /// [`CliError`]: see its [`kind`](CliError::kind).
    pub async fn execute<St, W>(&self, tokens: &Tokens<St>, out: &mut W) -> Result<(), CliError>
    where
        St: ManageTokens + Migrate,
        St::UserId: FromStr + Display,
        <St::UserId as FromStr>::Err: Display,
        W: Write + Send + ?Sized,
    {
        let tokens = tokens.audit_source(AUDIT_SOURCE);
        match self {
            Self::Create {
                user,
                name,
                scopes,
                expires_in,
                json,
            } => {
                let user = parse_user::<St::UserId>(user)?;
                let mut request = crate::CreateToken::new(name.clone()).scopes(scopes.clone());
                if let Some(lifetime) = expires_in {
                    request = request.expires_in(*lifetime);
                }
                let created = tokens
                    .create_with(user.clone(), request)
                    .await
                    .map_err(|e| CliError::token(e, &user))?;
                if *json {
                    let mut object = record_json(&created.record, now());
                    object["token"] = Value::from(created.token.expose_secret());
                    write_json(out, &object)?;
                } else {
                    writeln!(out, "{}", created.token.expose_secret()).map_err(CliError::output)?;
                }
            }
            Self::List { user, json } => {
                let records = match user {
                    Some(user) => {
                        let user = parse_user::<St::UserId>(user)?;
                        tokens
                            .list(&user)
                            .await
                            .map_err(|e| CliError::token(e, &user))?
                    }
                    // Every live token: `expiring` over all the time there is.
                    None => every_page(&tokens, Duration::MAX).await?,
                };
                write_records(out, &records, *json)?;
            }
            Self::Expiring { within, json } => {
                let records = every_page(&tokens, *within).await?;
                write_records(out, &records, *json)?;
            }
            Self::Revoke { user, id } => {
                let user = parse_user::<St::UserId>(user)?;
                let outcome = tokens
                    .revoke(&user, *id)
                    .await
                    .map_err(|e| CliError::token(e, &user))?;
                let line = match outcome {
                    Revoked::AlreadyRevoked => format!("token {id} was revoked already"),
                    _ => format!("revoked token {id}"),
                };
                writeln!(out, "{line}").map_err(CliError::output)?;
            }
            Self::RevokeAll { user } => {
                let user = parse_user::<St::UserId>(user)?;
                let count = tokens
                    .revoke_all(&user)
                    .await
                    .map_err(|e| CliError::token(e, &user))?;
                writeln!(out, "revoked {count} token{} of user {user}", plural(count))
                    .map_err(CliError::output)?;
            }
            Self::Rotate {
                user,
                id,
                overlap,
                json,
            } => {
                let user = parse_user::<St::UserId>(user)?;
                let rotated = tokens
                    .rotate(&user, *id, *overlap)
                    .await
                    .map_err(|e| CliError::token(e, &user))?;
                if *json {
                    let mut object = record_json(&rotated.record, now());
                    object["token"] = Value::from(rotated.token.expose_secret());
                    object["previous"] = record_json(&rotated.previous, now());
                    write_json(out, &object)?;
                } else {
                    writeln!(out, "{}", rotated.token.expose_secret()).map_err(CliError::output)?;
                }
            }
            Self::Prune { older_than } => {
                let count = tokens
                    .prune(*older_than)
                    .await
                    .map_err(CliError::from_token_error)?;
                writeln!(out, "pruned {count} token{}", plural(count)).map_err(CliError::output)?;
            }
            Self::Migrate => {
                Migrate::migrate(&**tokens.store())
                    .await
                    .map_err(CliError::from_store_error)?;
                writeln!(out, "the token table is up to date").map_err(CliError::output)?;
            }
            Self::Schema => match Migrate::schema_sql(&**tokens.store()) {
                Some(sql) => writeln!(out, "{}", sql.trim_end()).map_err(CliError::output)?,
                None => {
                    return Err(CliError::new(
                        CliErrorKind::Unsupported,
                        "this token store has no SQL schema of its own",
                    ));
                }
            },
        }
        Ok(())
    }
}

/// Every page of the live tokens expiring within `within` (clamped to the last date
/// `time` can hold).
async fn every_page<St: ManageTokens>(
    tokens: &Tokens<St>,
    within: Duration,
) -> Result<Vec<TokenRecord<St::UserId>>, CliError> {
    // The year 9999 is the last `time` holds without its large-dates feature.
    let horizon = time::Date::from_calendar_date(9999, time::Month::January, 1)
        .map(|d| d.midnight().assume_utc() - now())
        .unwrap_or(Duration::days(365 * 100));
    let within = within.min(horizon);
    let mut records = Vec::new();
    let mut after = None;
    loop {
        let Page {
            records: page,
            next,
            ..
        } = tokens
            .expiring_within(within, after.as_ref(), MAX_PAGE_SIZE)
            .await
            .map_err(CliError::from_token_error)?;
        records.extend(page);
        match next {
            Some(cursor) => after = Some(cursor),
            None => return Ok(records),
        }
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn plural(count: u64) -> &'static str {
    if count == 1 { "" } else { "s" }
}

fn parse_user<U>(text: &str) -> Result<U, CliError>
where
    U: FromStr,
    U::Err: Display,
{
    text.parse().map_err(|e: U::Err| {
        CliError::new(
            CliErrorKind::Usage,
            format!(
                "invalid user id {:?}: {e}",
                crate::lifecycle::excerpt(text, 64)
            ),
        )
    })
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// What a token is at `now`: `active`, `rotated` (working on until its overlap ends),
/// `expired` or `revoked`.
fn state<U>(record: &TokenRecord<U>, now: OffsetDateTime) -> &'static str {
    if record.revoked {
        "revoked"
    } else if now >= record.expires_at {
        "expired"
    } else if record.rotated_to.is_some() {
        "rotated"
    } else {
        "active"
    }
}

/// A record for `--json`: everything but its hash.
fn record_json<U: Display>(record: &TokenRecord<U>, now: OffsetDateTime) -> Value {
    json!({
        "id": record.id.to_string(),
        "user_id": record.user_id.to_string(),
        "name": record.name,
        "scopes": record.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "client_id": record.client_id,
        "state": state(record, now),
        "revoked": record.revoked,
        "created_at": rfc3339(record.created_at),
        "expires_at": rfc3339(record.expires_at),
        "last_used_at": record.last_used_at.map(rfc3339),
        "rotated_from": record.rotated_from.map(|id| id.to_string()),
        "rotated_to": record.rotated_to.map(|id| id.to_string()),
    })
}

fn write_json<W: Write + ?Sized>(out: &mut W, value: &Value) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(|e| CliError::output(e.into()))?;
    writeln!(out).map_err(CliError::output)
}

/// The records as a table, one line each (or a JSON array): never a secret, nor a hash.
fn write_records<U: Display, W: Write + ?Sized>(
    out: &mut W,
    records: &[TokenRecord<U>],
    json: bool,
) -> Result<(), CliError> {
    let now = now();
    if json {
        let list = records.iter().map(|r| record_json(r, now)).collect();
        return write_json(out, &Value::Array(list));
    }
    if records.is_empty() {
        return writeln!(out, "no tokens").map_err(CliError::output);
    }
    let header = [
        "ID",
        "USER",
        "NAME",
        "SCOPES",
        "STATE",
        "EXPIRES",
        "LAST USED",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            [
                r.id.to_string(),
                r.user_id.to_string(),
                r.name.clone(),
                r.scopes.to_string().replace(' ', ","),
                state(r, now).to_owned(),
                rfc3339(r.expires_at),
                r.last_used_at.map_or_else(|| "never".to_owned(), rfc3339),
            ]
        })
        .collect();
    let mut widths = [0; 7];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = width - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{line}").map_err(CliError::output)?;
    }
    Ok(())
}

/// Parses a duration for the command line: one or more numbers, each with a unit, `s`,
/// `m`, `h`, `d` (24 hours) or `w` (7 days).
///
/// ```
/// use time::Duration;
/// use tower_pat::cli::parse_duration;
///
/// assert_eq!(parse_duration("30d"), Ok(Duration::days(30)));
/// assert_eq!(parse_duration("10m"), Ok(Duration::minutes(10)));
/// assert_eq!(parse_duration("1d12h"), Ok(Duration::hours(36)));
/// assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
/// assert!(parse_duration("30").is_err()); // which unit?
/// assert!(parse_duration("-1d").is_err());
/// ```
///
/// # Errors
///
/// A message saying what is wrong: empty, a number without its unit, an unknown unit,
/// or too long a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const HELP: &str = "a number and a unit (s, m, h, d or w), such as 90s, 10m, 12h or 30d";
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("no duration: give {HELP}"));
    }
    let mut total: i64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "{:?} is not a duration: give {HELP}",
                crate::lifecycle::excerpt(text, 32)
            ));
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit())
            .map_or(tail.len(), |(i, _)| i);
        let (unit, tail) = tail.split_at(unit_len);
        let seconds: i64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 604_800,
            "" => {
                return Err(format!(
                    "{:?} has no unit: give {HELP}",
                    crate::lifecycle::excerpt(text, 32)
                ));
            }
            other => {
                return Err(format!(
                    "unknown unit {:?} in {:?}: give {HELP}",
                    crate::lifecycle::excerpt(other, 16),
                    crate::lifecycle::excerpt(text, 32)
                ));
            }
        };
        total = number
            .parse::<i64>()
            .ok()
            .and_then(|n| n.checked_mul(seconds))
            .and_then(|n| n.checked_add(total))
            .ok_or_else(|| format!("{:?} is too long", crate::lifecycle::excerpt(text, 32)))?;
        rest = tail;
    }
    Ok(Duration::seconds(total))
}

/// The schema steps of a store: what `migrate` and `schema` run on. Implemented for the
/// shipped SQL stores, SQLite, PostgreSQL and MySQL (and for a
/// [`CachedStore`](crate::CachedStore) or an `Arc` in front of one); a store of the application's own implements it with its own migrations, or
/// leaves both defaults (`migrate` and `schema` then say the store has none).
///
/// ```
/// use tower_pat::{MemoryStore, Tokens, cli::Migrate, scope::ScopeRegistry};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // A store in memory has no table: `migrate` says so.
/// let store = MemoryStore::<i64>::new();
/// assert!(store.schema_sql().is_none());
/// assert!(Migrate::migrate(&store).await.is_err());
/// # });
/// ```
#[async_trait::async_trait]
pub trait Migrate: Send + Sync {
    /// Creates the store's table and indexes, or brings them up to date; changes
    /// nothing when they are.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the database refuses, or (by default) of kind
    /// [`StoreErrorKind::Unsupported`]: the store has no migrations of its own.
    async fn migrate(&self) -> Result<(), StoreError> {
        Err(StoreError::with_kind(
            StoreErrorKind::Unsupported,
            "this token store has no migrations of its own",
        ))
    }

    /// The SQL `migrate` runs, to read or to hand to a migration tool; `None` (the
    /// default) for a store without SQL.
    fn schema_sql(&self) -> Option<String> {
        None
    }
}

impl<U: crate::record::UserId> Migrate for MemoryStore<U> {}

#[async_trait::async_trait]
impl<T: Migrate + ?Sized> Migrate for Arc<T> {
    async fn migrate(&self) -> Result<(), StoreError> {
        (**self).migrate().await
    }

    fn schema_sql(&self) -> Option<String> {
        (**self).schema_sql()
    }
}

#[cfg(feature = "cache")]
#[async_trait::async_trait]
impl<St: ManageTokens + Migrate> Migrate for crate::CachedStore<St> {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner().migrate().await
    }

    fn schema_sql(&self) -> Option<String> {
        self.inner().schema_sql()
    }
}

#[cfg(feature = "sqlite")]
#[async_trait::async_trait]
impl<U: crate::store::sqlite::SqliteUserId> Migrate for crate::SqliteStore<U> {
    async fn migrate(&self) -> Result<(), StoreError> {
        crate::SqliteStore::migrate(self).await
    }

    fn schema_sql(&self) -> Option<String> {
        Some(crate::SqliteStore::schema_sql(self))
    }
}

#[cfg(feature = "postgres")]
#[async_trait::async_trait]
impl<U: crate::store::postgres::PostgresUserId> Migrate for crate::PostgresStore<U> {
    async fn migrate(&self) -> Result<(), StoreError> {
        crate::PostgresStore::migrate(self).await
    }

    fn schema_sql(&self) -> Option<String> {
        Some(crate::PostgresStore::schema_sql(self))
    }
}

#[cfg(feature = "mysql")]
#[async_trait::async_trait]
impl<U: crate::store::mysql::MySqlUserId> Migrate for crate::store::MySqlStore<U> {
    async fn migrate(&self) -> Result<(), StoreError> {
        crate::store::MySqlStore::migrate(self).await
    }

    fn schema_sql(&self) -> Option<String> {
        Some(crate::store::MySqlStore::schema_sql(self))
    }
}

/// What kind of failure a [`CliError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CliErrorKind {
    /// The command's input is wrong (a user id that does not parse).
    Usage,
    /// The database cannot be reached (or did not answer in time).
    Unreachable,
    /// The token table does not exist: run `migrate`.
    MissingTable,
    /// A scope is invalid or not defined, or the user may not grant it (named).
    Scope,
    /// The user has no token with that id.
    NotFound,
    /// The token operation was refused for another reason (a bad name, a lifetime over
    /// the maximum, the per-user cap, a token rotated already…).
    Refused,
    /// The store failed otherwise.
    Store,
    /// The store does not do what was asked (no migrations, no schema).
    Unsupported,
    /// The output could not be written.
    Output,
}

/// Why a command failed: a message of one line for the operator, its kind, and the
/// error underneath as its [`source`](Error::source). Never contains a token.
#[derive(Debug)]
pub struct CliError {
    kind: CliErrorKind,
    message: String,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl CliError {
    /// A failure of `kind`, with its message: for a command of the application's own
    /// that reports the way these do.
    ///
    /// ```
    /// use tower_pat::cli::{CliError, CliErrorKind};
    ///
    /// let e = CliError::new(CliErrorKind::Usage, "give --user or --all");
    /// assert_eq!((e.kind(), e.to_string().as_str()), (CliErrorKind::Usage, "give --user or --all"));
    /// ```
    pub fn new(kind: CliErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The store could not be opened or connected to: for the application's own
    /// `SqliteStore::open` or `PostgresStore::connect` before a command runs.
    ///
    /// ```
    /// use tower_pat::{cli::{CliError, CliErrorKind}, store::StoreError};
    ///
    /// let e = CliError::unreachable(StoreError::timeout());
    /// assert_eq!(e.kind(), CliErrorKind::Unreachable);
    /// assert_eq!(e.to_string(), "cannot reach the token database: the token store did not answer in time");
    /// ```
    pub fn unreachable(error: StoreError) -> Self {
        Self {
            kind: CliErrorKind::Unreachable,
            message: format!("cannot reach the token database: {}", one_line(&error)),
            source: Some(Box::new(error)),
        }
    }

    /// A store failure during a command, sorted into its kind: a missing table (the
    /// message says to run `migrate`), an unreachable database, or another failure.
    ///
    /// ```
    /// use tower_pat::{cli::{CliError, CliErrorKind}, store::StoreError};
    ///
    /// let sqlite = std::io::Error::other("no such table: personal_access_tokens");
    /// let e = CliError::from_store_error(StoreError::new(sqlite));
    /// assert_eq!(e.kind(), CliErrorKind::MissingTable);
    /// assert!(e.to_string().starts_with("the token table does not exist: run the `migrate` command"));
    /// ```
    pub fn from_store_error(error: StoreError) -> Self {
        if is_missing_table(&error) {
            let detail = innermost(&error);
            return Self {
                kind: CliErrorKind::MissingTable,
                message: format!(
                    "the token table does not exist: run the `migrate` command first (the database said: {detail})"
                ),
                source: Some(Box::new(error)),
            };
        }
        if is_unreachable(&error) {
            return Self::unreachable(error);
        }
        let kind = match error.kind() {
            StoreErrorKind::Unsupported => CliErrorKind::Unsupported,
            _ => CliErrorKind::Store,
        };
        Self {
            kind,
            message: one_line(&error),
            source: Some(Box::new(error)),
        }
    }

    /// A lifecycle failure, sorted into its kind.
    ///
    /// ```
    /// use tower_pat::{TokenError, cli::{CliError, CliErrorKind}, record::TokenId};
    ///
    /// let e = CliError::from(TokenError::NotFound(TokenId::from_bytes([1; 16])));
    /// assert_eq!(e.kind(), CliErrorKind::NotFound);
    /// ```
    pub fn from_token_error(error: TokenError) -> Self {
        let error = match error {
            TokenError::Store(e) => return Self::from_store_error(e),
            other => other,
        };
        let kind = match &error {
            TokenError::Scope(_) | TokenError::NotGrantable(_) => CliErrorKind::Scope,
            TokenError::NotFound(_) => CliErrorKind::NotFound,
            _ => CliErrorKind::Refused,
        };
        Self {
            kind,
            message: one_line(&error),
            source: Some(Box::new(error)),
        }
    }

    /// A lifecycle failure for `user`'s token: the messages name the user.
    fn token<U: Display>(error: TokenError, user: &U) -> Self {
        let message = match &error {
            TokenError::NotFound(id) => Some(format!("user {user} has no token {id}")),
            TokenError::NotGrantable(scope) => Some(format!(
                "user {user} may not grant scope {:?}",
                crate::lifecycle::excerpt(scope, 64)
            )),
            TokenError::Scope(ScopeError::Undefined(scope)) => Some(format!(
                "undefined scope {:?}: the application's registry does not define it",
                crate::lifecycle::excerpt(scope, 64)
            )),
            _ => None,
        };
        let mut e = Self::from_token_error(error);
        if let Some(message) = message {
            e.message = message;
        }
        e
    }

    fn output(error: io::Error) -> Self {
        Self {
            kind: CliErrorKind::Output,
            message: format!("cannot write the output: {error}"),
            source: Some(Box::new(error)),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> CliErrorKind {
        self.kind
    }

    /// Prints `error: <message>` on standard error, one line, and gives the exit code
    /// (failure: 1).
    pub fn report(&self) -> ExitCode {
        eprintln!("error: {}", self.message);
        ExitCode::FAILURE
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for CliError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl From<TokenError> for CliError {
    fn from(error: TokenError) -> Self {
        Self::from_token_error(error)
    }
}

impl From<StoreError> for CliError {
    fn from(error: StoreError) -> Self {
        Self::from_store_error(error)
    }
}

/// An error's message on one line (a database may answer on several).
fn one_line(error: &dyn Display) -> String {
    error
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The message of the deepest error in the chain: the database's own words.
fn innermost(error: &(dyn Error + 'static)) -> String {
    let mut deepest = error;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    one_line(&deepest)
}

/// Whether the error says the table is missing: SQLite's "no such table", PostgreSQL's
/// `42P01` ("relation … does not exist"), MySQL's `42S02` ("Table … doesn't exist").
fn is_missing_table(error: &(dyn Error + 'static)) -> bool {
    chain(error).any(|e| {
        #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
        if let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>()
            && db
                .code()
                .is_some_and(|code| matches!(&*code, "42P01" | "42S02" | "1146"))
        {
            return true;
        }
        let text = e.to_string();
        text.contains("no such table")
            || (text.contains("relation") && text.contains("does not exist"))
            || (text.starts_with("Table") && text.contains("doesn't exist"))
    })
}

/// Whether the error says the database could not be reached: a timeout, or the
/// connection itself failing.
fn is_unreachable(error: &StoreError) -> bool {
    if error.kind() == StoreErrorKind::Timeout {
        return true;
    }
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
    if chain(error).any(|e| {
        matches!(
            e.downcast_ref::<sqlx::Error>(),
            Some(
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
            )
        )
    }) {
        return true;
    }
    false
}

fn chain<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |e: &&'a (dyn Error + 'static)| (*e).source())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::seconds(90)));
        assert_eq!(parse_duration("12h"), Ok(Duration::hours(12)));
        assert_eq!(parse_duration("2w"), Ok(Duration::days(14)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::minutes(90)));
        assert_eq!(parse_duration(" 7d "), Ok(Duration::days(7)));
        for bad in [
            "",
            "d",
            "7",
            "7x",
            "7 d",
            "1.5h",
            "-1d",
            "99999999999999999999d",
            "7dd",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_duration("7x")
                .unwrap_err()
                .contains("unknown unit \"x\"")
        );
        assert!(parse_duration("7").unwrap_err().contains("no unit"));
    }

    #[test]
    fn store_errors_are_sorted() {
        let missing = StoreError::new(io::Error::other("no such table: personal_access_tokens"));
        let e = CliError::from_store_error(missing);
        assert_eq!(e.kind(), CliErrorKind::MissingTable);
        assert!(e.to_string().contains("run the `migrate` command"), "{e}");
        assert!(e.to_string().contains("personal_access_tokens"), "{e}");

        let e = CliError::from_store_error(StoreError::timeout());
        assert_eq!(e.kind(), CliErrorKind::Unreachable);

        let e = CliError::from_store_error(StoreError::new(io::Error::other("line one\nline two")));
        assert_eq!(e.kind(), CliErrorKind::Store);
        assert!(!e.to_string().contains('\n'));
    }
}
