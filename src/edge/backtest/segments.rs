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

/// The index of a status's cell in matrix order (AD, AG, AS, BD, .. CS).
pub fn cell_index(s: &Status) -> usize {
    let row = match s.level {
        Level::Normal => 0,
        Level::Prevent | Level::Retain => 1,
        Level::WinBack => 2,
    };
    let tier = match s.tier {
        Tier::Diamond => 0,
        Tier::Gold => 1,
        Tier::Silver => 2,
    };
    row * 3 + tier
}

/// The cell names in matrix order.
pub fn cell_names() -> Vec<String> {
    ROWS.iter()
        .flat_map(|&l| Tier::ALL.iter().map(move |&t| cell(l, t)))
        .collect()
}

/// The segment matrix of one dealer (or of all) at the first instant of a month, as
/// stream time passed it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatrixAt {
    /// The month (`YYYY-MM`) at whose start the matrix was taken.
    pub month: String,
    /// Dealer id, or `all`.
    pub dealer: String,
    /// Customers per cell, in matrix order ([`cell_names`]).
    pub customers: [u64; 9],
    /// Their value per cell (CNY), like [`Cell::value`].
    pub value: [f64; 9],
}

/// The matrices per dealer and for all (last) of the customers' statuses at a month's
/// start: `(dealer, status, value)` per customer.
pub fn matrix_at<'a>(
    month: &str,
    statuses: impl IntoIterator<Item = (&'a str, Status, f64)>,
) -> Vec<MatrixAt> {
    let mut by: BTreeMap<&str, ([u64; 9], [f64; 9])> = BTreeMap::new();
    let mut all = ([0u64; 9], [0f64; 9]);
    for (dealer, s, value) in statuses {
        let i = cell_index(&s);
        let d = by.entry(dealer).or_insert(([0; 9], [0.0; 9]));
        d.0[i] += 1;
        d.1[i] += value;
        all.0[i] += 1;
        all.1[i] += value;
    }
    let mut out: Vec<MatrixAt> = by
        .into_iter()
        .map(|(dealer, (customers, value))| MatrixAt {
            month: month.to_string(),
            dealer: dealer.to_string(),
            customers,
            value,
        })
        .collect();
    out.push(MatrixAt {
        month: month.to_string(),
        dealer: super::kpis::ALL_DEALERS.to_string(),
        customers: all.0,
        value: all.1,
    });
    out
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
        assert_eq!(
            cell_names()[cell_index(&s(Level::Retain, Tier::Gold))],
            "BG"
        );
        let at = matrix_at(
            "2024-03",
            [
                ("D1", s(Level::Normal, Tier::Diamond), 10.0),
                ("D2", s(Level::Normal, Tier::Diamond), 5.0),
                ("D2", s(Level::WinBack, Tier::Silver), 1.0),
            ],
        );
        assert_eq!(at.len(), 3);
        let all = at.last().unwrap();
        assert_eq!(
            (all.dealer.as_str(), all.customers[0], all.value[0]),
            ("all", 2, 15.0)
        );
        assert_eq!((at[1].dealer.as_str(), at[1].customers[8]), ("D2", 1));
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
