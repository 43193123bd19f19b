//! The table "AWS round trips per route" in docs/performance.md, read and measured: a counting
//! proxy in front of the stand-in (every DynamoDB and KMS request passes it) and the simulator's
//! call log (every Alipay call). `tests/it/round_trips.rs` measures the routes, the year of
//! subscriptions (`tests/it/subscriptions.rs`) a charge run.
//!
//! A row's cell is read up to its first parenthesis: `1 GetItem + 1 TransactWriteItems (+1 …
//! when …)` means exactly one GetItem and one TransactWriteItems in the case measured; the
//! parenthesis names the other cases.

use std::collections::BTreeMap;

use crate::chaos::proxy::FaultProxy;
use crate::support::Stack;

/// `N Operation + N Operation (…)` → {Operation: N}; `–` → nothing.
pub fn parse_cell(cell: &str) -> BTreeMap<String, u64> {
    let main = cell.split('(').next().unwrap_or("").trim();
    let mut counts = BTreeMap::new();
    for part in main.split('+') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(op)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else {
            continue;
        };
        *counts
            .entry(op.trim_matches(|c: char| !c.is_alphanumeric()).to_owned())
            .or_default() += n;
    }
    counts
}

/// The docs/performance.md row whose first cell is `route`: (DynamoDB, KMS, Alipay) counts.
pub fn readme_row(route: &str) -> [BTreeMap<String, u64>; 3] {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/performance.md"
    ))
    .expect("docs/performance.md");
    let section = doc
        .split("## AWS round trips per route")
        .nth(1)
        .expect("docs/performance.md has the round-trips table");
    let row = section
        .lines()
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            (cells.len() == 4 && cells[0] == route).then_some(cells)
        })
        .next()
        .unwrap_or_else(|| panic!("no docs/performance.md row for {route}"));
    [parse_cell(row[1]), parse_cell(row[2]), parse_cell(row[3])]
}

pub struct Meter {
    pub stack: Stack,
    pub proxy: FaultProxy,
    pub alipay_seen: usize,
}

impl Meter {
    /// Starts counting afresh.
    pub fn reset(&mut self) {
        self.proxy.take_requests();
        self.alipay_seen = self.stack.simulator.calls().len();
    }

    /// What was counted since the last reset: (DynamoDB, KMS, Alipay).
    pub fn take(&mut self) -> [BTreeMap<String, u64>; 3] {
        let mut dynamodb = BTreeMap::new();
        let mut kms = BTreeMap::new();
        for (operation, n) in self.proxy.take_requests() {
            match operation.split_once('.') {
                Some(("DynamoDB", op)) => dynamodb.insert(op.to_owned(), n),
                Some(("KMS", op)) => kms.insert(op.to_owned(), n),
                _ => panic!("unexpected request {operation}"),
            };
        }
        let calls = self.stack.simulator.calls();
        let mut alipay = BTreeMap::new();
        for (method, _) in calls.iter().skip(self.alipay_seen) {
            let short = method.strip_prefix("alipay.trade.").unwrap_or(method);
            *alipay.entry(short.to_owned()).or_default() += 1;
        }
        self.alipay_seen = calls.len();
        [dynamodb, kms, alipay]
    }

    /// What was counted since the last reset must be the sum of these rows.
    pub fn check(&mut self, routes: &[&str]) {
        let measured = self.take();
        let mut expected: [BTreeMap<String, u64>; 3] = Default::default();
        for route in routes {
            for (sum, row) in expected.iter_mut().zip(readme_row(route)) {
                for (op, n) in row {
                    *sum.entry(op).or_default() += n;
                }
            }
        }
        assert_eq!(
            measured, expected,
            "{routes:?}: measured (DynamoDB, KMS, Alipay) differs from the rows of docs/performance.md"
        );
    }
}
