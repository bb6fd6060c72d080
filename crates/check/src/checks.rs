//! The invariants, each a query for the rows that break it.
//!
//! A check is a SELECT returning one row per violation; the runner counts them and keeps
//! ten examples, so a check costs two bounded statements (one when it passes) whatever
//! the database holds. Counting is done in SQL with aggregates, never row by row here.
//!
//! The checks restate what the engine promises from the schema alone, without the
//! engine's code: if a bug in the engine wrote a wrong counter, it cannot also make the
//! checker compute the same wrong number.

use crate::db::{Db, Val};
use crate::rules::per_customer_bound;

/// Examples kept per check.
pub const MAX_EXAMPLES: usize = 10;

/// Rule assignments read per statement by the per-customer check.
const ASSIGNMENT_PAGE: i64 = 500;

pub struct Check {
    pub name: &'static str,
    pub description: &'static str,
    run: Run,
}

enum Run {
    Sql(&'static str),
    Custom(fn(&mut dyn Db) -> Result<Found, String>),
}

#[derive(Default)]
pub struct Found {
    pub violations: u64,
    pub examples: Vec<String>,
}

impl Found {
    fn add(&mut self, other: Found, prefix: &str) {
        self.violations += other.violations;
        for e in other.examples {
            if self.examples.len() < MAX_EXAMPLES {
                self.examples.push(format!("{prefix}{e}"));
            }
        }
    }
}

impl Check {
    pub fn run(&self, db: &mut dyn Db) -> Result<Found, String> {
        match self.run {
            Run::Sql(sql) => violations(db, sql, &[]),
            Run::Custom(f) => f(db),
        }
    }
}

/// Counts the rows of a violation query and fetches the first examples, ordered by the
/// first two columns so repeated runs show the same rows.
fn violations(db: &mut dyn Db, sql: &str, params: &[Val]) -> Result<Found, String> {
    let counted = db.query(&format!("SELECT COUNT(*) AS n FROM ({sql}) AS v"), params)?;
    let n = counted.rows.first().and_then(|r| r.first()).and_then(Val::int).unwrap_or(0);
    if n == 0 {
        return Ok(Found::default());
    }
    let mut with_limit = params.to_vec();
    with_limit.push(Val::Int(MAX_EXAMPLES as i64));
    let rows = db.query(
        &format!("SELECT * FROM ({sql}) AS v ORDER BY 1, 2 LIMIT ${}", with_limit.len()),
        &with_limit,
    )?;
    let examples = rows
        .rows
        .iter()
        .map(|r| {
            rows.columns
                .iter()
                .zip(r)
                .map(|(c, v)| format!("{c}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    Ok(Found {
        violations: u64::try_from(n).unwrap_or(0),
        examples,
    })
}

/// A redemption that currently counts: it succeeded and was not rolled back. Stacked
/// parents match too, but they name no voucher, so per-voucher sums skip them.
macro_rules! counts {
    ($r:literal) => {
        concat!(
            $r,
            ".object = 'redemption' AND ",
            $r,
            ".result = 'SUCCESS' AND ",
            $r,
            ".status = 'SUCCEEDED'"
        )
    };
}

const VOUCHER_REDEEMED_QUANTITY: &str = concat!(
    "SELECT v.project_id, v.code, v.id, v.redeemed_quantity, COALESCE(r.n, 0) AS succeeded_redemptions FROM vouchers v ",
    "LEFT JOIN (SELECT r.project_id, r.voucher_id, COUNT(*) AS n FROM redemptions r WHERE r.voucher_id IS NOT NULL AND ",
    counts!("r"),
    " GROUP BY r.project_id, r.voucher_id) r ON r.project_id = v.project_id AND r.voucher_id = v.id ",
    "WHERE v.redeemed_quantity <> COALESCE(r.n, 0)"
);

// The engine lets an update lower a voucher's quantity (or a campaign's, for its
// generated codes) below what was already redeemed. The limit was only in force for
// redemptions made after the last such update, so a voucher over its quantity is a
// violation only when one of its counting redemptions is newer than both updates.
// (updated_at also moves for changes that keep the quantity; that only skips checks.)
const VOUCHER_QUANTITY_LIMIT: &str = concat!(
    "SELECT v.project_id, v.code, v.id, v.quantity, v.redeemed_quantity FROM vouchers v ",
    "LEFT JOIN campaigns c ON c.project_id = v.project_id AND c.id = v.campaign_id ",
    "WHERE v.redeemed_quantity < 0 OR (v.quantity IS NOT NULL AND v.redeemed_quantity > v.quantity AND EXISTS (",
    "SELECT 1 FROM redemptions r WHERE r.project_id = v.project_id AND r.voucher_id = v.id AND ",
    counts!("r"),
    " AND r.created_at > COALESCE(v.updated_at, '') AND r.created_at > COALESCE(c.updated_at, '')))"
);

// "Last" is the highest entry id: ids are time-ordered, the order the engine lists them in.
const GIFT_BALANCE_MATCHES_LEDGER: &str = concat!(
    "SELECT v.project_id, v.code, v.id, v.gift_balance, l.total AS ledger_sum, g.balance_after AS last_balance_after FROM vouchers v ",
    "LEFT JOIN (SELECT project_id, voucher_id, CAST(SUM(amount) AS BIGINT) AS total, MAX(id) AS last_id FROM gift_transactions ",
    "GROUP BY project_id, voucher_id) l ON l.project_id = v.project_id AND l.voucher_id = v.id ",
    "LEFT JOIN gift_transactions g ON g.project_id = l.project_id AND g.id = l.last_id ",
    "WHERE (v.gift_balance IS NOT NULL AND (v.gift_balance <> COALESCE(l.total, 0) OR g.balance_after <> v.gift_balance)) ",
    "OR (v.gift_balance IS NULL AND l.voucher_id IS NOT NULL)"
);

const GIFT_LEDGER_CHAIN: &str = concat!(
    "SELECT project_id, voucher_id, id, kind, amount, balance_after, running_sum FROM (",
    "SELECT project_id, voucher_id, id, kind, amount, balance_after, CAST(SUM(amount) OVER (PARTITION BY project_id, voucher_id ",
    "ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS BIGINT) AS running_sum FROM gift_transactions) AS t ",
    "WHERE balance_after <> running_sum"
);

const GIFT_BALANCE_NOT_NEGATIVE: &str = concat!(
    "SELECT project_id, id, 'vouchers.gift_balance' AS field, gift_balance AS value FROM vouchers WHERE gift_balance < 0 ",
    "UNION ALL SELECT project_id, id, 'gift_transactions.balance_after', balance_after FROM gift_transactions WHERE balance_after < 0"
);

// Credits taken by counting redemptions, and for gift cards also what the ledger says was
// spent (redemption entries are negative, refunds positive).
const GIFT_REDEEMED_AMOUNT: &str = concat!(
    "SELECT v.project_id, v.code, v.id, v.redeemed_amount, COALESCE(r.total, 0) AS succeeded_credits, ",
    "CASE WHEN v.gift_balance IS NULL THEN NULL ELSE -COALESCE(g.total, 0) END AS ledger_spent FROM vouchers v ",
    "LEFT JOIN (SELECT r.project_id, r.voucher_id, CAST(SUM(r.amount) AS BIGINT) AS total FROM redemptions r WHERE r.voucher_id IS NOT NULL AND ",
    counts!("r"),
    " GROUP BY r.project_id, r.voucher_id) r ON r.project_id = v.project_id AND r.voucher_id = v.id ",
    "LEFT JOIN (SELECT project_id, voucher_id, CAST(SUM(amount) AS BIGINT) AS total FROM gift_transactions ",
    "WHERE kind IN ('CREDITS_REDEMPTION', 'CREDITS_REFUND') GROUP BY project_id, voucher_id) g ",
    "ON g.project_id = v.project_id AND g.voucher_id = v.id ",
    "WHERE v.redeemed_amount <> COALESCE(r.total, 0) OR (v.gift_balance IS NOT NULL AND v.redeemed_amount <> -COALESCE(g.total, 0))"
);

// A customer's newest counting redemption was allowed only if none of theirs counted
// before it (quantity 1), so two counting ones are a violation, unless the quantity was
// set to 1 after that newest one (see VOUCHER_QUANTITY_LIMIT).
const SINGLE_USE_PER_CUSTOMER: &str = concat!(
    "SELECT r.project_id, v.code, r.voucher_id, r.customer_id, COUNT(*) AS succeeded FROM redemptions r ",
    "JOIN vouchers v ON v.project_id = r.project_id AND v.id = r.voucher_id ",
    "LEFT JOIN campaigns c ON c.project_id = v.project_id AND c.id = v.campaign_id ",
    "WHERE v.quantity = 1 AND r.customer_id IS NOT NULL AND ",
    counts!("r"),
    " GROUP BY r.project_id, v.code, r.voucher_id, r.customer_id HAVING COUNT(*) > 1 ",
    "AND MAX(r.created_at) > MAX(COALESCE(v.updated_at, '')) AND MAX(r.created_at) > MAX(COALESCE(c.updated_at, ''))"
);

// Events are matched by resource and by the type the row's outcome calls for.
const REDEMPTION_HAS_EVENT: &str = concat!(
    "SELECT r.project_id, r.id, r.object, r.result, COUNT(o.id) AS events FROM redemptions r ",
    "LEFT JOIN outbox o ON o.project_id = r.project_id AND o.resource_id = r.id AND o.event_type = CASE ",
    "WHEN r.object = 'redemption_rollback' THEN 'redemption.rollback.succeeded' ",
    "WHEN r.result = 'FAILURE' THEN 'redemption.failed' ELSE 'redemption.succeeded' END ",
    "GROUP BY r.project_id, r.id, r.object, r.result HAVING COUNT(o.id) <> 1"
);

// Both directions go through primary keys (redemption_id has no index): a rollback must
// find its redemption ROLLED_BACK and naming it back, which also rules out a second
// rollback of one redemption; a ROLLED_BACK redemption must find the rollback it names.
const ROLLBACK_CONSISTENCY: &str = concat!(
    "SELECT rb.project_id, rb.id, 'rollback of a missing redemption' AS problem, rb.redemption_id AS other FROM redemptions rb ",
    "LEFT JOIN redemptions r ON r.project_id = rb.project_id AND r.id = rb.redemption_id ",
    "WHERE rb.object = 'redemption_rollback' AND (r.id IS NULL OR r.object <> 'redemption') ",
    "UNION ALL SELECT rb.project_id, rb.id, 'rolled-back redemption is not ROLLED_BACK or names another rollback', r.id FROM redemptions rb ",
    "JOIN redemptions r ON r.project_id = rb.project_id AND r.id = rb.redemption_id ",
    "WHERE rb.object = 'redemption_rollback' AND r.object = 'redemption' ",
    "AND (r.status <> 'ROLLED_BACK' OR r.rollback_id IS NULL OR r.rollback_id <> rb.id) ",
    "UNION ALL SELECT rb.project_id, rb.id, 'rollback amount is not minus the redemption amount', r.id FROM redemptions rb ",
    "JOIN redemptions r ON r.project_id = rb.project_id AND r.id = rb.redemption_id ",
    "WHERE rb.object = 'redemption_rollback' AND r.object = 'redemption' AND rb.amount <> -r.amount ",
    "UNION ALL SELECT r.project_id, r.id, 'ROLLED_BACK without its rollback', r.rollback_id FROM redemptions r ",
    "LEFT JOIN redemptions rb ON rb.project_id = r.project_id AND rb.id = r.rollback_id ",
    "WHERE r.object = 'redemption' AND r.status = 'ROLLED_BACK' ",
    "AND (rb.id IS NULL OR rb.object <> 'redemption_rollback' OR rb.redemption_id IS NULL OR rb.redemption_id <> r.id) ",
    "UNION ALL SELECT r.project_id, r.id, 'redemption is not ROLLED_BACK but names a rollback', r.rollback_id FROM redemptions r ",
    "WHERE r.object = 'redemption' AND r.status <> 'ROLLED_BACK' AND r.rollback_id IS NOT NULL ",
    "UNION ALL SELECT c.project_id, c.id, 'stacked redemption status differs from its parent', p.id FROM redemptions c ",
    "JOIN redemptions p ON p.project_id = c.project_id AND p.id = c.parent_id ",
    "WHERE c.object = 'redemption' AND p.object = 'redemption' AND c.status <> p.status"
);

const IDEMPOTENCY_SINGLE_EFFECT: &str = concat!(
    "SELECT scope, idem_key, state, 'done without a stored status and body' AS problem FROM idempotency ",
    "WHERE state = 'done' AND (status IS NULL OR body IS NULL) ",
    "UNION ALL SELECT scope, idem_key, state, 'unknown state' FROM idempotency WHERE state NOT IN ('in_flight', 'applied', 'done') ",
    "UNION ALL SELECT scope, idem_key, state, 'no owner token to fence a stalled request' FROM idempotency ",
    "WHERE state IN ('in_flight', 'applied') AND owner IS NULL ",
    "UNION ALL SELECT scope, idem_key, MIN(state), 'key recorded more than once' FROM idempotency ",
    "GROUP BY scope, idem_key HAVING COUNT(*) > 1"
);

macro_rules! orphans {
    ($table:literal, $id:literal) => {
        concat!(
            "SELECT '",
            $table,
            "' AS table_name, t.project_id, ",
            $id,
            " AS row_id FROM ",
            $table,
            " t WHERE NOT EXISTS (SELECT 1 FROM projects p WHERE p.id = t.project_id)"
        )
    };
}

// Projects are soft-deleted (deleted_at), so a row without its project is always wrong.
const ROWS_HAVE_PROJECT: &str = concat!(
    orphans!("api_keys", "t.app_id"),
    " UNION ALL ",
    orphans!("customers", "t.id"),
    " UNION ALL ",
    orphans!("products", "t.id"),
    " UNION ALL ",
    orphans!("skus", "t.id"),
    " UNION ALL ",
    orphans!("orders", "t.id"),
    " UNION ALL ",
    orphans!("campaigns", "t.id"),
    " UNION ALL ",
    orphans!("vouchers", "t.id"),
    " UNION ALL ",
    orphans!("validation_rules", "t.id"),
    " UNION ALL ",
    orphans!("rule_assignments", "t.id"),
    " UNION ALL ",
    orphans!("redemptions", "t.id"),
    " UNION ALL ",
    orphans!("gift_transactions", "t.id"),
    " UNION ALL ",
    orphans!("voucher_sessions", "t.voucher_id || '/' || t.session_key"),
    " UNION ALL ",
    orphans!("outbox", "t.id"),
    " UNION ALL ",
    orphans!("async_actions", "t.id"),
    " UNION ALL ",
    orphans!("import_rows", "t.action_id || '/' || CAST(t.row_no AS TEXT)"),
    " UNION ALL SELECT 'idempotency', t.scope, t.idem_key FROM idempotency t ",
    "WHERE t.scope <> 'management' AND NOT EXISTS (SELECT 1 FROM projects p WHERE p.id = t.scope)"
);

// A delivery carries the event it was made from: that event exists in its project with
// its type; its status is one the engine writes; and its attempt counter equals its
// logged attempts (the counter and the log row are written in one transaction).
const WEBHOOK_DELIVERY_CONSISTENCY: &str = concat!(
    "SELECT d.project_id, d.id, 'event missing or of another type' AS problem FROM webhook_deliveries d ",
    "LEFT JOIN outbox o ON o.id = d.event_id AND o.project_id = d.project_id AND o.event_type = d.event_type ",
    "WHERE o.id IS NULL ",
    "UNION ALL SELECT project_id, id, 'unknown status' FROM webhook_deliveries ",
    "WHERE status NOT IN ('pending', 'delivering', 'succeeded', 'dead', 'canceled') ",
    "UNION ALL SELECT d.project_id, d.id, 'attempts counter differs from the attempt log' FROM webhook_deliveries d ",
    "WHERE d.attempts <> (SELECT COUNT(*) FROM webhook_attempts a WHERE a.project_id = d.project_id AND a.delivery_id = d.id)"
);

/// The database's schema version: checks of tables a later migration added pass on older
/// databases (and backups of them), which have nothing to check.
fn schema_version(db: &mut dyn Db) -> Result<i64, String> {
    let rows = db.query("SELECT COALESCE(MAX(version), 0) AS v FROM tessera_migrations", &[])?;
    Ok(rows.rows.first().and_then(|r| r.first()).and_then(Val::int).unwrap_or(0))
}

/// Webhook deliveries exist from schema version 3; from 11 a delivery may store no body
/// (''), and is then sent one built from its event and the URL kept with it.
fn webhook_delivery_consistency(db: &mut dyn Db) -> Result<Found, String> {
    let version = schema_version(db)?;
    if version < 3 {
        return Ok(Found::default());
    }
    let mut found = violations(db, WEBHOOK_DELIVERY_CONSISTENCY, &[])?;
    if version >= 11 {
        found.add(violations(db, DELIVERY_BODY_SOURCE, &[])?, "");
    }
    Ok(found)
}

const DELIVERY_BODY_SOURCE: &str =
    "SELECT project_id, id, 'no body stored and no target URL to build it with' AS problem FROM webhook_deliveries \
     WHERE body = '' AND target_url IS NULL";

/// Redemption counts exist from schema version 10.
fn redemption_counts(db: &mut dyn Db) -> Result<Found, String> {
    if schema_version(db)? < 10 {
        return Ok(Found::default());
    }
    violations(db, REDEMPTION_COUNTS, &[])
}

/// Counts kept against succeeded redemptions counted from the redemptions themselves, by
/// campaign, and by voucher for vouchers in no campaign, both ways round.
const REDEMPTION_COUNTS: &str = concat!(
    "WITH k AS (SELECT project_id, scope, scope_id, CAST(SUM(succeeded) AS BIGINT) AS n FROM redemption_counts ",
    "GROUP BY project_id, scope, scope_id), ",
    "a AS (SELECT project_id, 'campaign_id' AS scope, campaign_id AS scope_id, COUNT(*) AS n FROM redemptions ",
    "WHERE object = 'redemption' AND result = 'SUCCESS' AND status = 'SUCCEEDED' AND campaign_id IS NOT NULL GROUP BY project_id, campaign_id ",
    "UNION ALL SELECT project_id, 'voucher_id', voucher_id, COUNT(*) FROM redemptions ",
    "WHERE object = 'redemption' AND result = 'SUCCESS' AND status = 'SUCCEEDED' AND campaign_id IS NULL AND voucher_id IS NOT NULL ",
    "GROUP BY project_id, voucher_id) ",
    "SELECT k.project_id, k.scope_id, k.scope || ' count ' || CAST(k.n AS TEXT) || ' but ' || CAST(COALESCE(a.n, 0) AS TEXT) || ",
    "' succeeded redemptions' AS problem FROM k LEFT JOIN a ON a.project_id = k.project_id AND a.scope = k.scope AND a.scope_id = k.scope_id ",
    "WHERE k.n <> COALESCE(a.n, 0) ",
    "UNION ALL SELECT a.project_id, a.scope_id, a.scope || ' has ' || CAST(a.n AS TEXT) || ' succeeded redemptions but no count' FROM a ",
    "WHERE NOT EXISTS (SELECT 1 FROM k WHERE k.project_id = a.project_id AND k.scope = a.scope AND k.scope_id = a.scope_id)"
);

const CAMPAIGN_VOUCHER_COUNT: &str = concat!(
    "SELECT c.project_id, c.id AS campaign_id, 'vouchers_count ' || CAST(c.vouchers_count AS TEXT) || ' but ' || ",
    "CAST(COALESCE(v.n, 0) AS TEXT) || ' vouchers' AS problem FROM campaigns c ",
    "LEFT JOIN (SELECT project_id, campaign_id, COUNT(*) AS n FROM vouchers WHERE campaign_id IS NOT NULL GROUP BY project_id, campaign_id) v ",
    "ON v.project_id = c.project_id AND v.campaign_id = c.id WHERE c.vouchers_count <> COALESCE(v.n, 0) ",
    "UNION ALL SELECT v.project_id, v.campaign_id, 'voucher ' || v.code || ' names this campaign, which does not exist' FROM vouchers v ",
    "WHERE v.campaign_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.project_id = v.project_id AND c.id = v.campaign_id)"
);

/// Per-customer limits: the single-use form from the schema, plus every rule assignment
/// whose rule makes a per-customer bound evident (see `rules::per_customer_bound`).
fn per_customer_limit(db: &mut dyn Db) -> Result<Found, String> {
    let mut found = violations(db, SINGLE_USE_PER_CUSTOMER, &[])?;
    // Keyset pages keep memory bounded however many rules are assigned.
    let (mut after_project, mut after_id) = (String::new(), String::new());
    loop {
        let page = db.query(
            "SELECT a.project_id, a.id, a.rule_id, a.related_object_type, a.related_object_id, a.created_at, \
             COALESCE(r.updated_at, r.created_at) AS rule_changed, r.data, v.id AS voucher_id, v.campaign_id \
             FROM rule_assignments a JOIN validation_rules r ON r.project_id = a.project_id AND r.id = a.rule_id \
             LEFT JOIN vouchers v ON a.related_object_type = 'voucher' AND v.project_id = a.project_id AND v.id = a.related_object_id \
             WHERE r.data LIKE '%redemption.count.per_customer%' AND (a.project_id > $1 OR (a.project_id = $1 AND a.id > $2)) \
             ORDER BY a.project_id, a.id LIMIT $3",
            &[after_project.as_str().into(), after_id.as_str().into(), ASSIGNMENT_PAGE.into()],
        )?;
        for row in &page.rows {
            let text = |i: usize| row.get(i).and_then(Val::text).unwrap_or_default().to_string();
            let (project, rule, kind, object) = (text(0), text(2), text(3), text(4));
            let (assigned, rule_changed, data) = (text(5), text(6), text(7));
            // The engine counts a campaign's redemptions for its vouchers and a standalone
            // voucher's own. A rule on one voucher of a campaign limits only that voucher's
            // redemptions against the campaign's count; that form is not checked.
            let column = match (kind.as_str(), row.get(8), row.get(9)) {
                ("campaign", _, _) => "campaign_id",
                ("voucher", Some(Val::Text(_)), Some(Val::Null)) => "voucher_id",
                _ => continue,
            };
            let rules =
                serde_json::from_str::<serde_json::Value>(&data).map_err(|e| format!("validation rule {rule} holds invalid JSON: {e}"))?;
            let Some(bound) = per_customer_bound(&rules["rules"]) else {
                continue;
            };
            // Only a redemption newer than both the assignment and the rule's last change
            // was held to this bound.
            let since = assigned.max(rule_changed);
            let sql = format!(
                "SELECT project_id, customer_id, COUNT(*) AS succeeded, MAX(created_at) AS latest FROM redemptions r \
                 WHERE project_id = $1 AND {column} = $2 AND customer_id IS NOT NULL AND {} \
                 GROUP BY project_id, customer_id HAVING COUNT(*) > $3 AND MAX(created_at) > $4",
                counts!("r")
            );
            let params = [project.as_str().into(), object.as_str().into(), bound.into(), since.as_str().into()];
            found.add(
                violations(db, &sql, &params)?,
                &format!("rule {rule} on {kind} {object} allows {bound}: "),
            );
        }
        match page.rows.last() {
            Some(last) if page.rows.len() as i64 == ASSIGNMENT_PAGE => {
                after_project = last.first().and_then(Val::text).unwrap_or_default().to_string();
                after_id = last.get(1).and_then(Val::text).unwrap_or_default().to_string();
            }
            _ => break,
        }
    }
    Ok(found)
}

pub const CHECKS: &[Check] = &[
    Check {
        name: "redemption_counts",
        description: "the successful redemptions counted per campaign (per voucher outside campaigns), which \
                      campaign.redemptions.count rules read, equal the succeeded, not rolled back redemptions",
        run: Run::Custom(redemption_counts),
    },
    Check {
        name: "voucher_redeemed_quantity",
        description: "each voucher's redeemed_quantity equals its number of succeeded, not rolled back redemptions",
        run: Run::Sql(VOUCHER_REDEEMED_QUANTITY),
    },
    Check {
        name: "voucher_quantity_limit",
        description: "redeemed_quantity is never negative and never exceeds quantity (counted only when a redemption is newer than \
                      the last update of the voucher or its campaign, since an update may lower the quantity)",
        run: Run::Sql(VOUCHER_QUANTITY_LIMIT),
    },
    Check {
        name: "gift_balance_matches_ledger",
        description: "a gift voucher's balance equals the sum of its ledger and its newest entry's balance_after; \
                      vouchers without a balance have no ledger",
        run: Run::Sql(GIFT_BALANCE_MATCHES_LEDGER),
    },
    Check {
        name: "gift_ledger_chain",
        description: "each ledger entry's balance_after equals the running sum of the voucher's entries up to it (in id order)",
        run: Run::Sql(GIFT_LEDGER_CHAIN),
    },
    Check {
        name: "gift_balance_not_negative",
        description: "no gift balance and no ledger balance_after is below zero",
        run: Run::Sql(GIFT_BALANCE_NOT_NEGATIVE),
    },
    Check {
        name: "gift_redeemed_amount",
        description: "a voucher's redeemed_amount equals the credits of its succeeded, not rolled back redemptions, \
                      and for gift vouchers minus the ledger's redemption and refund entries",
        run: Run::Sql(GIFT_REDEEMED_AMOUNT),
    },
    Check {
        name: "per_customer_limit",
        description: "no customer holds two succeeded redemptions of a voucher whose quantity is 1, nor more than a per-customer \
                      rule allows; rules are checked only when assigned to a campaign or a standalone voucher and when their \
                      logic uses 'and' alone and bounds redemption.count.per_customer (daily and monthly limits, rules listed \
                      in voucher or campaign documents and other rule forms are not checked)",
        run: Run::Custom(per_customer_limit),
    },
    Check {
        name: "redemption_has_event",
        description: "every redemption, failure and rollback row has exactly one outbox event of its type for its id",
        run: Run::Sql(REDEMPTION_HAS_EVENT),
    },
    Check {
        name: "rollback_consistency",
        description: "each rollback names a redemption that is ROLLED_BACK and names it back (so one rollback per redemption) \
                      with the opposite amount; stacked redemptions share their parent's status",
        run: Run::Sql(ROLLBACK_CONSISTENCY),
    },
    Check {
        name: "idempotency_single_effect",
        description: "idempotency records are well formed: one per (scope, key), a known state, an owner while in flight, a \
                      stored response when done; records are not linked to effects, so a double effect itself is not detectable here",
        run: Run::Sql(IDEMPOTENCY_SINGLE_EFFECT),
    },
    Check {
        name: "rows_have_project",
        description: "every tenant row (and every idempotency scope other than 'management') names an existing project",
        run: Run::Sql(ROWS_HAVE_PROJECT),
    },
    Check {
        name: "campaign_voucher_count",
        description: "each campaign's vouchers_count equals its number of vouchers, and no voucher names a missing campaign",
        run: Run::Sql(CAMPAIGN_VOUCHER_COUNT),
    },
    Check {
        name: "webhook_delivery_consistency",
        description: "each webhook delivery names an outbox event of its project and type, has a known status, and counts \
                      exactly the attempts it has logged",
        run: Run::Custom(webhook_delivery_consistency),
    },
];
