//! Which tables `cdc` publishes: `db.table` patterns, `*` for any run of
//! characters.
//!
//! Policy: system schemas (`mysql`, `information_schema`,
//! `performance_schema`, `sys`) are never published; an empty `include`
//! means every other table; `exclude` wins over `include`. Names compare
//! exactly (table names are case-sensitive on Linux servers).

use regex::Regex;

use crate::classify::verdict::is_system_schema;

pub struct Filter {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

fn compile(pattern: &str) -> Regex {
    let body: Vec<String> = pattern.split('*').map(regex::escape).collect();
    Regex::new(&format!("^{}$", body.join(".*"))).expect("escaped pattern compiles")
}

impl Filter {
    pub fn new(include: &[String], exclude: &[String]) -> Filter {
        Filter {
            include: include.iter().map(|p| compile(p)).collect(),
            exclude: exclude.iter().map(|p| compile(p)).collect(),
        }
    }

    pub fn matches(&self, db: &str, table: &str) -> bool {
        if is_system_schema(db) {
            return false;
        }
        let name = format!("{db}.{table}");
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(&name)))
            && !self.exclude.iter().any(|r| r.is_match(&name))
    }

    /// Whether any table of `db` may be published (database-level DDL).
    pub fn may_match_db(&self, db: &str) -> bool {
        !is_system_schema(db)
            && (self.include.is_empty()
                || self.include.iter().any(|r| {
                    let p = r.as_str();
                    // `^db\.…`: compare the database part of the pattern.
                    let db_part = p.trim_start_matches('^').split("\\.").next().unwrap_or("");
                    Regex::new(&format!("^{db_part}$")).is_ok_and(|d| d.is_match(db))
                }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_include_and_exclude_tables() {
        let f = Filter::new(
            &["shop.*".into(), "crm.users".into()],
            &["shop.tmp_*".into()],
        );
        assert!(f.matches("shop", "orders"));
        assert!(!f.matches("shop", "tmp_x"));
        assert!(f.matches("crm", "users"));
        assert!(!f.matches("crm", "users2"));
        assert!(!f.matches("shopx", "orders"));
        assert!(f.may_match_db("shop"));
        assert!(!f.may_match_db("other"));
        let all = Filter::new(&[], &[]);
        assert!(all.matches("a", "b"));
        assert!(!all.matches("mysql", "user"));
        assert!(!all.may_match_db("information_schema"));
    }
}
