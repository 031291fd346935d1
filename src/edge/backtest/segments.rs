//! The policy-dependent KPIs: the segment matrix (loyalty row A/B/C from the warning
//! level × value tier D/G/S) at the end of the history, with customers, value and the
//! recommended instruments per cell, and the flows between lifecycle stages month by
//! month. Pure: it reads customer statuses and status changes.

use super::eval::{Change, Window};
use crate::core::kpi::month_of;
use crate::core::status::{cell, recommended_actions, Level, Lifecycle, Status, Tier};
use serde::Serialize;
use std::collections::BTreeMap;

/// One cell of the segment matrix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cell {
    /// The cell (`AD` .. `CS`).
    pub cell: String,
    /// Customers in it at the end of the history.
    pub customers: u64,
    /// Their value: spend in the value window ending at each one's last visit (CNY).
    pub value: f64,
    /// What the campaign system is told to do for customers in the cell.
    pub instruments: Vec<String>,
}

/// The rows of the matrix, each with the level that stands for it.
const ROWS: [Level; 3] = [Level::Normal, Level::Prevent, Level::WinBack];

/// The instruments for a cell (as the engine recommends them: row A as `normal`, B as
/// `prevent`, C as `win_back` while churned, not yet fully).
pub fn instruments(level: Level, tier: Tier) -> Vec<String> {
    let lifecycle = match level {
        Level::WinBack => Lifecycle::Churned,
        _ => Lifecycle::Active,
    };
    let status = Status {
        level,
        lifecycle,
        tier,
    };
    recommended_actions(&status, &[])
}

/// The matrix from every customer's final status and value, cells in the order
/// AD, AG, AS, BD, .. CS (all nine, empty ones too).
pub fn matrix(statuses: impl IntoIterator<Item = (Status, f64)>) -> Vec<Cell> {
    let mut cells: Vec<Cell> = ROWS
        .iter()
        .flat_map(|&l| {
            Tier::ALL.iter().map(move |&t| Cell {
                cell: cell(l, t),
                customers: 0,
                value: 0.0,
                instruments: instruments(l, t),
            })
        })
        .collect();
    for (s, value) in statuses {
        let c = s.cell();
        if let Some(x) = cells.iter_mut().find(|x| x.cell == c) {
            x.customers += 1;
            x.value += value;
        }
    }
    cells
}

/// Customers moving from one lifecycle stage to another in a month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// The month (`YYYY-MM`).
    pub month: String,
    /// Stage before.
    pub from: Lifecycle,
    /// Stage after.
    pub to: Lifecycle,
    /// Status changes with that move.
    pub customers: u64,
}

/// The lifecycle moves inside the window, by month and (from, to).
pub fn flows<'a>(changes: impl IntoIterator<Item = &'a Vec<Change>>, window: Window) -> Vec<Flow> {
    let mut m: BTreeMap<(String, Lifecycle, Lifecycle), u64> = BTreeMap::new();
    for ch in changes {
        for c in ch {
            if c.from_lifecycle != c.to_lifecycle && window.contains(c.at) {
                *m.entry((month_of(c.at).to_string(), c.from_lifecycle, c.to_lifecycle))
                    .or_default() += 1;
            }
        }
    }
    m.into_iter()
        .map(|((month, from, to), customers)| Flow {
            month,
            from,
            to,
            customers,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::Ts;

    #[test]
    fn the_matrix_counts_customers_and_value_per_cell() {
        let s = |level, tier| Status {
            level,
            lifecycle: Lifecycle::Active,
            tier,
        };
        let m = matrix([
            (s(Level::Normal, Tier::Diamond), 9000.0),
            (s(Level::Retain, Tier::Diamond), 100.0),
            (s(Level::Prevent, Tier::Diamond), 50.0),
            (s(Level::WinBack, Tier::Silver), 10.0),
        ]);
        assert_eq!(m.len(), 9);
        let get = |c: &str| m.iter().find(|x| x.cell == c).unwrap();
        assert_eq!((get("AD").customers, get("AD").value), (1, 9000.0));
        assert_eq!((get("BD").customers, get("BD").value), (2, 150.0));
        assert_eq!(get("CS").instruments, vec!["no_after_sales_budget"]);
        assert_eq!(get("AG").customers, 0);
    }

    #[test]
    fn flows_count_lifecycle_moves_per_month() {
        let at = |d| Ts::ymd_hms(2024, 3, d, 0, 0, 0);
        let c = |t, from, to| Change {
            at: t,
            from: Level::Normal,
            to: Level::Prevent,
            from_lifecycle: from,
            to_lifecycle: to,
        };
        let a = vec![
            c(at(1), Lifecycle::Active, Lifecycle::QuasiChurned),
            c(at(2), Lifecycle::QuasiChurned, Lifecycle::QuasiChurned),
        ];
        let b = vec![c(at(20), Lifecycle::Active, Lifecycle::QuasiChurned)];
        let w = Window {
            from: None,
            end: at(31),
        };
        let f = flows([&a, &b], w);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].month.as_str(), f[0].customers), ("2024-03", 2));
    }
}
