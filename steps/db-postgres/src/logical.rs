//! `setup-logical`: publication on the publisher, subscription on the subscriber (domain.md
//! §6.1), converging on every run.
//!
//! Publisher: checks `wal_level = logical` and that it is not in recovery; creates the
//! publication when `pg_publication` lacks it (`FOR ALL TABLES`, or `FOR TABLE` the listed
//! tables), or aligns an existing table list with `ALTER PUBLICATION … SET TABLE`. A publication
//! whose kind (all tables vs a list) differs from the input is an error rather than dropped.
//!
//! Subscriber: checks it is writable and already has every published table (logical
//! replication does not copy DDL, and a missing table stops the apply worker), then creates the
//! subscription when `pg_subscription` lacks it (`copy_data`, `create_slot`, `enabled`), or
//! enables it, adds the publication, and `REFRESH PUBLICATION` so newly published tables are
//! picked up. An existing subscription's connection string is left alone.
//!
//! Privileges: the publisher role needs CREATE on the database (and ownership of the tables);
//! the subscriber role needs superuser (PostgreSQL 15) to create a subscription.

use meridian_families::StepError;
use meridian_families::database::{DatabaseAction, DatabaseInput, DatabaseOutput, split_qualified};
use meridian_sdk::sql::Value;
use meridian_sdk::{Ctx, Error};

use crate::VENDOR;
use crate::pg::{Conn, first, quote_ident, quote_literal, quote_qualified, rows};

pub(crate) const SQL_PUBLISHER: &str =
    "SELECT current_setting('wal_level') AS wal_level, pg_is_in_recovery() AS in_recovery";
pub(crate) const SQL_PUBLICATION: &str =
    "SELECT puballtables AS all_tables FROM pg_publication WHERE pubname = $1::text";
pub(crate) const SQL_PUBLICATION_TABLES: &str = "SELECT format('%I.%I', schemaname, tablename) AS qname \
     FROM pg_publication_tables WHERE pubname = $1::text ORDER BY 1";
/// Resolves a (quoted) table name the way `CREATE PUBLICATION` will, through the search path.
pub(crate) const SQL_RESOLVE_TABLE: &str = "SELECT format('%I.%I', n.nspname, c.relname) AS qname \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1::text)";
/// What `FOR ALL TABLES` would publish; used only in plan mode before the publication exists.
pub(crate) const SQL_ALL_TABLES: &str = "SELECT format('%I.%I', n.nspname, c.relname) AS qname \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p' \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1";
pub(crate) const SQL_SUBSCRIBER: &str = "SELECT pg_is_in_recovery() AS in_recovery";
pub(crate) const SQL_MISSING_TABLES: &str = "SELECT q AS qname FROM unnest(string_to_array($1::text, $2::text)) AS q WHERE to_regclass(q) IS NULL ORDER BY 1";
pub(crate) const SQL_SUBSCRIPTION: &str = "SELECT subenabled AS enabled, $2::text = ANY(subpublications) AS has_publication \
     FROM pg_subscription WHERE subname = $1::text \
     AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())";
pub(crate) const SQL_SLOT: &str =
    "SELECT active FROM pg_replication_slots WHERE slot_name = $1::text";

/// Separates table names passed as one text parameter (the host's values have no arrays).
const SEP: &str = "\n";

/// The publication as `pg_publication` has it.
#[derive(Clone, Copy)]
struct Publication {
    all_tables: bool,
}

/// Runs `setup-logical`. Every check (publisher, tables, subscriber, slot, conninfo) runs
/// before the first change, so a refusal leaves both servers as they were.
pub(crate) fn run(ctx: &Ctx, input: &DatabaseInput) -> Result<DatabaseOutput, Error> {
    let publisher = Conn::new(ctx, input.publisher());
    let subscriber = Conn::new(ctx, input.standby.as_deref().unwrap_or_default());
    let publication = input.publication.as_deref().unwrap_or_default();
    let subscription = input.subscription.as_deref().unwrap_or_default();
    let mut out = DatabaseOutput::new(VENDOR, DatabaseAction::SetupLogical, &input.connection);
    out.planned = ctx.is_plan();

    check_publisher(publisher)?;
    let wanted = match &input.tables {
        Some(list) => Some(resolve_tables(publisher, list)?),
        None => None,
    };
    let existing_pub = lookup_publication(publisher, publication)?;
    if let Some(p) = existing_pub {
        check_publication_kind(publisher, publication, p, wanted.is_some())?;
    }
    let tables = match (&wanted, existing_pub) {
        (Some(list), _) => list.clone(),
        (None, Some(_)) => publication_tables(publisher, publication)?,
        (None, None) => {
            let r = publisher.query("listing all tables", SQL_ALL_TABLES, &[])?;
            rows(&r).filter_map(|row| row.text("qname")).collect()
        }
    };
    check_subscriber(subscriber, &tables)?;
    let existing_sub = subscriber.query(
        "looking up the subscription",
        SQL_SUBSCRIPTION,
        &[Value::from(subscription), Value::from(publication)],
    )?;
    let existing_sub = rows(&existing_sub)
        .next()
        .map(|row| (row.bool("enabled"), row.bool("has_publication")));
    let dsn = match existing_sub {
        None => {
            check_no_stale_slot(publisher, subscription)?;
            Some(publisher_dsn(ctx, input, subscription)?)
        }
        Some(_) => None,
    };

    out.publication_created = Some(ensure_publication(
        publisher,
        publication,
        existing_pub,
        wanted.as_deref(),
        &mut out.changes,
    )?);
    out.tables = if existing_pub.is_none() && wanted.is_none() && !ctx.is_plan() {
        // FOR ALL TABLES: report what PostgreSQL actually published.
        publication_tables(publisher, publication)?
    } else {
        tables
    };

    match (existing_sub, dsn) {
        (Some((enabled, has_publication)), _) => {
            out.subscription_created = Some(false);
            let sub = quote_ident(subscription);
            if enabled == Some(false) {
                let sql = format!("ALTER SUBSCRIPTION {sub} ENABLE");
                subscriber.change(&mut out.changes, "enabling the subscription", &sql, &sql)?;
            }
            // ADD PUBLICATION refreshes by itself (its default `refresh = true`).
            let sql = if has_publication == Some(true) {
                format!("ALTER SUBSCRIPTION {sub} REFRESH PUBLICATION")
            } else {
                format!(
                    "ALTER SUBSCRIPTION {sub} ADD PUBLICATION {}",
                    quote_ident(publication)
                )
            };
            subscriber.change(&mut out.changes, "refreshing the subscription", &sql, &sql)?;
            out.subscription_refreshed = Some(true);
        }
        (None, dsn) => {
            let options = "WITH (copy_data = true, create_slot = true, enabled = true)";
            let (sub, pubq) = (quote_ident(subscription), quote_ident(publication));
            let sql = format!(
                "CREATE SUBSCRIPTION {sub} CONNECTION {} PUBLICATION {pubq} {options}",
                quote_literal(dsn.as_deref().unwrap_or_default())
            );
            let shown =
                format!("CREATE SUBSCRIPTION {sub} CONNECTION '***' PUBLICATION {pubq} {options}");
            subscriber.change(&mut out.changes, "creating the subscription", &sql, &shown)?;
            out.subscription_created = Some(true);
            out.subscription_refreshed = Some(false);
        }
    }
    Ok(out)
}

fn check_publisher(publisher: Conn<'_>) -> Result<(), Error> {
    let r = publisher.query("checking the publisher", SQL_PUBLISHER, &[])?;
    let r = first(&r, publisher.name, "checking the publisher")?;
    if r.bool("in_recovery") == Some(true) {
        return Err(Error::fatal(format!(
            "publisher `{}` is a standby in recovery; publish from the primary",
            publisher.name
        )));
    }
    let level = r.text("wal_level").unwrap_or_default();
    if level != "logical" {
        return Err(Error::fatal(format!(
            "publisher `{}` has wal_level = {level}; set wal_level = logical (and max_replication_slots, max_wal_senders) in postgresql.conf and restart it",
            publisher.name
        )));
    }
    Ok(())
}

/// Canonical `schema.table` names (quoted as `format('%I.%I')` does) of the input's tables, each
/// resolved on the publisher; a missing table is a fatal error naming it.
fn resolve_tables(publisher: Conn<'_>, tables: &[String]) -> Result<Vec<String>, Error> {
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        split_qualified(t)
            .map_err(|why| crate::to_sdk_error(StepError::invalid(format!("tables: {why}"))))?;
        let r = publisher.query(
            "resolving a table",
            SQL_RESOLVE_TABLE,
            &[Value::from(quote_qualified(t))],
        )?;
        let Some(q) = rows(&r).next().and_then(|row| row.text("qname")) else {
            return Err(Error::fatal(format!(
                "table `{t}` does not exist on the publisher `{}` (names are exact and case-sensitive; qualify with the schema if it is not on the search path)",
                publisher.name
            )));
        };
        if !out.contains(&q) {
            out.push(q);
        }
    }
    out.sort();
    Ok(out)
}

fn lookup_publication(
    publisher: Conn<'_>,
    publication: &str,
) -> Result<Option<Publication>, Error> {
    let r = publisher.query(
        "looking up the publication",
        SQL_PUBLICATION,
        &[Value::from(publication)],
    )?;
    Ok(rows(&r).next().map(|row| Publication {
        all_tables: row.bool("all_tables").unwrap_or(false),
    }))
}

/// An existing publication of the other kind (all tables vs a list) is not converted: that
/// would drop tables from, or add every table to, what subscribers receive.
fn check_publication_kind(
    publisher: Conn<'_>,
    publication: &str,
    p: Publication,
    listed: bool,
) -> Result<(), Error> {
    let pubq = quote_ident(publication);
    match (listed, p.all_tables) {
        (false, false) => Err(Error::fatal(format!(
            "publication `{publication}` on `{}` exists with a table list, but no `tables` were given (meaning all tables); list its tables in `tables`, or drop it (DROP PUBLICATION {pubq}) to recreate it FOR ALL TABLES",
            publisher.name
        ))),
        (true, true) => Err(Error::fatal(format!(
            "publication `{publication}` on `{}` exists FOR ALL TABLES, but `tables` lists specific tables; remove `tables`, or drop it (DROP PUBLICATION {pubq}) to recreate it with the list",
            publisher.name
        ))),
        _ => Ok(()),
    }
}

/// Creates the publication or aligns its table list; returns whether it was created.
fn ensure_publication(
    publisher: Conn<'_>,
    publication: &str,
    existing: Option<Publication>,
    wanted: Option<&[String]>,
    changes: &mut Vec<String>,
) -> Result<bool, Error> {
    let pubq = quote_ident(publication);
    if existing.is_none() {
        let sql = match wanted {
            None => format!("CREATE PUBLICATION {pubq} FOR ALL TABLES"),
            Some(list) => format!("CREATE PUBLICATION {pubq} FOR TABLE {}", list.join(", ")),
        };
        publisher.change(changes, "creating the publication", &sql, &sql)?;
        return Ok(true);
    }
    if let Some(list) = wanted {
        let mut current = publication_tables(publisher, publication)?;
        current.sort();
        if current != list {
            let sql = format!("ALTER PUBLICATION {pubq} SET TABLE {}", list.join(", "));
            publisher.change(changes, "aligning the publication's tables", &sql, &sql)?;
        }
    }
    Ok(false)
}

fn publication_tables(publisher: Conn<'_>, publication: &str) -> Result<Vec<String>, Error> {
    let r = publisher.query(
        "listing the publication's tables",
        SQL_PUBLICATION_TABLES,
        &[Value::from(publication)],
    )?;
    let mut tables: Vec<String> = rows(&r).filter_map(|row| row.text("qname")).collect();
    tables.sort();
    Ok(tables)
}

fn check_subscriber(subscriber: Conn<'_>, tables: &[String]) -> Result<(), Error> {
    let r = subscriber.query("checking the subscriber", SQL_SUBSCRIBER, &[])?;
    let r = first(&r, subscriber.name, "checking the subscriber")?;
    if r.bool("in_recovery") == Some(true) {
        return Err(Error::fatal(format!(
            "subscriber `{}` is a physical standby (in recovery); logical replication needs a writable server",
            subscriber.name
        )));
    }
    if tables.is_empty() {
        return Ok(());
    }
    let missing = subscriber.query(
        "checking the subscriber's tables",
        SQL_MISSING_TABLES,
        &[Value::from(tables.join(SEP)), Value::from(SEP)],
    )?;
    let missing: Vec<String> = rows(&missing).filter_map(|row| row.text("qname")).collect();
    if !missing.is_empty() {
        return Err(Error::fatal(format!(
            "subscriber `{}` lacks published table(s) {}; logical replication does not copy DDL: create the schema there first (e.g. pg_dump --schema-only on the publisher, restored on the subscriber)",
            subscriber.name,
            missing.join(", ")
        )));
    }
    Ok(())
}

/// `CREATE SUBSCRIPTION` creates a slot named like the subscription on the publisher; a slot
/// already there (left by a dropped subscription) would make it fail half-way.
fn check_no_stale_slot(publisher: Conn<'_>, subscription: &str) -> Result<(), Error> {
    let r = publisher.query(
        "looking for a leftover replication slot",
        SQL_SLOT,
        &[Value::from(subscription)],
    )?;
    if let Some(row) = rows(&r).next() {
        return Err(Error::fatal(format!(
            "publisher `{}` already has a replication slot `{subscription}` (active: {}) but the subscriber has no such subscription; if it is left over, drop it on the publisher with SELECT pg_drop_replication_slot({})",
            publisher.name,
            row.bool("active").unwrap_or(false),
            quote_literal(subscription)
        )));
    }
    Ok(())
}

fn publisher_dsn(ctx: &Ctx, input: &DatabaseInput, subscription: &str) -> Result<String, Error> {
    if let Some(dsn) = &input.publisher_dsn_for_subscriber {
        return Ok(dsn.clone());
    }
    if let Some(name) = &input.publisher_dsn_secret {
        let dsn = ctx.secret(name)?;
        if dsn.trim().is_empty() || dsn.contains('\0') {
            return Err(Error::fatal(format!(
                "secret `{name}` (the publisher conninfo) is empty or contains a NUL byte"
            )));
        }
        return Ok(dsn);
    }
    Err(Error::invalid_input(format!(
        "publisher_dsn_for_subscriber: needed to create subscription `{subscription}`: the conninfo the subscriber uses to reach the publisher, e.g. ${{{{ secrets.PUBLISHER_DSN }}}} (or name a secret in publisher_dsn_secret)"
    )))
}
