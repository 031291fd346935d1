//! Customer status (warning level, lifecycle, value tier, segment cell) and the
//! status-change event churnwatch publishes.
//!
//! This is the output contract; `schemas/status_change.avsc` is its Avro form.

use crate::core::time::Ts;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Churn-warning level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// No warning.
    Normal,
    /// 较重: drifting; act to prevent churn.
    Prevent,
    /// 严重: quasi-churned; act to retain.
    Retain,
    /// 特别严重: churned; win back.
    WinBack,
}

impl Level {
    /// Every level, mildest first.
    pub const ALL: [Level; 4] = [Level::Normal, Level::Prevent, Level::Retain, Level::WinBack];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Normal => "normal",
            Level::Prevent => "prevent",
            Level::Retain => "retain",
            Level::WinBack => "win_back",
        }
    }

    /// One level milder (normal stays normal).
    pub fn lowered(self) -> Level {
        match self {
            Level::Normal | Level::Prevent => Level::Normal,
            Level::Retain => Level::Prevent,
            Level::WinBack => Level::Retain,
        }
    }
}

/// Lifecycle stage from the time since the last visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Visited within 6 months.
    Active,
    /// 准流失: 6–12 months.
    QuasiChurned,
    /// 流失: 12–24 months.
    Churned,
    /// 彻底流失: over 24 months.
    FullyChurned,
}

impl Lifecycle {
    /// Every stage.
    pub const ALL: [Lifecycle; 4] = [
        Lifecycle::Active,
        Lifecycle::QuasiChurned,
        Lifecycle::Churned,
        Lifecycle::FullyChurned,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Active => "active",
            Lifecycle::QuasiChurned => "quasi_churned",
            Lifecycle::Churned => "churned",
            Lifecycle::FullyChurned => "fully_churned",
        }
    }
}

/// Value tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Highest value.
    Diamond,
    /// Middle.
    Gold,
    /// Lowest.
    Silver,
}

impl Tier {
    /// Every tier.
    pub const ALL: [Tier; 3] = [Tier::Diamond, Tier::Gold, Tier::Silver];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Diamond => "diamond",
            Tier::Gold => "gold",
            Tier::Silver => "silver",
        }
    }

    /// Letter in the segment matrix (D/G/S).
    pub fn letter(self) -> char {
        match self {
            Tier::Diamond => 'D',
            Tier::Gold => 'G',
            Tier::Silver => 'S',
        }
    }
}

/// The segment-matrix cell, e.g. `BD`: loyalty row (A loyal, B swinging, C churned) ×
/// value tier (D, G, S).
pub fn cell(level: Level, tier: Tier) -> String {
    let row = match level {
        Level::Normal => 'A',
        Level::Prevent | Level::Retain => 'B',
        Level::WinBack => 'C',
    };
    format!("{row}{}", tier.letter())
}

/// The complete status of a customer at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Status {
    /// Warning level.
    pub level: Level,
    /// Lifecycle stage.
    pub lifecycle: Lifecycle,
    /// Value tier.
    pub tier: Tier,
}

impl Status {
    /// The segment cell.
    pub fn cell(&self) -> String {
        cell(self.level, self.tier)
    }
}

/// Why a customer has their status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable code (e.g. `lifecycle_churned`, `cadence_overdue`).
    pub code: String,
    /// Human-readable explanation with the numbers behind it.
    pub text: String,
}

/// What caused a status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An input event for the customer.
    Event,
    /// A timer: stream time passed a threshold with no event.
    Timer,
}

/// The event churnwatch emits when a customer's level, lifecycle or cell changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    /// Deterministic id: the same inputs always give the same id.
    pub event_id: String,
    /// Customer.
    pub customer_id: String,
    /// Dealer the customer belongs to (the dealer of their latest event).
    pub dealer_id: String,
    /// Event time at which the change happened.
    pub event_time: String,
    /// What caused it.
    pub trigger: Trigger,
    /// Level before.
    pub previous_level: Level,
    /// Level now.
    pub level: Level,
    /// Lifecycle before.
    pub previous_lifecycle: Lifecycle,
    /// Lifecycle now.
    pub lifecycle: Lifecycle,
    /// Value tier now.
    pub tier: Tier,
    /// Cell before.
    pub previous_cell: String,
    /// Segment cell now.
    pub cell: String,
    /// Whole days since the last visit at `event_time`.
    pub days_since_last_visit: i64,
    /// Date of the last visit (`YYYY-MM-DD`).
    pub last_visit_date: String,
    /// Why.
    pub reasons: Vec<Reason>,
    /// What the campaign system should do.
    pub recommended_actions: Vec<String>,
    /// P(alive) at `event_time` (null without model parameters).
    pub p_alive: Option<f64>,
    /// Expected visits in the next 12 months (null without model parameters).
    pub expected_visits_12m: Option<f64>,
    /// Predicted customer lifetime value (null without a spend model).
    pub clv: Option<f64>,
}

/// Namespace for status-change ids (UUID v5).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c9f_2a0e_51b7_4f0e_9d3a_c0ff_ee00_c4a7);

/// The deterministic id of a status change.
pub fn change_id(
    customer_id: &str,
    at: Ts,
    from: &Status,
    to: &Status,
    trigger: Trigger,
) -> String {
    let key = format!(
        "{customer_id}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        at.0, from.level, from.lifecycle, from.tier, to.level, to.lifecycle, to.tier, trigger
    );
    Uuid::new_v5(&ID_NAMESPACE, key.as_bytes()).to_string()
}

/// Recommended campaign instruments for a cell (domain doc's segment matrix) plus the
/// specific reasons.
pub fn recommended_actions(status: &Status, reasons: &[Reason]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    };
    match (status.level, status.tier) {
        (Level::Normal, _) => {
            push("care_contact");
            push("loyalty_points");
        }
        (Level::Prevent | Level::Retain, t) => {
            push("maintenance_reminder");
            push("voucher");
            if t != Tier::Silver {
                push("personal_call");
                push("prepaid_maintenance_package");
            }
        }
        (Level::WinBack, Tier::Silver) => {
            if status.lifecycle == Lifecycle::FullyChurned {
                push("care_contact_only");
            } else {
                push("no_after_sales_budget");
            }
        }
        (Level::WinBack, _) => {
            if status.lifecycle == Lifecycle::FullyChurned {
                push("care_contact_only");
                push("insurance_renewal_offer");
                push("trade_in_offer");
            } else {
                push("win_back_call");
                push("discount_offer");
                push("experience_event_invitation");
            }
        }
    }
    for r in reasons {
        match r.code.as_str() {
            "contract_expiring" | "contract_lapsed" => push("contract_renewal_offer"),
            "warranty_ending" | "warranty_ended" => push("extended_warranty_offer"),
            "maintenance_due_mileage" => push("maintenance_reminder"),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells() {
        assert_eq!(cell(Level::Normal, Tier::Gold), "AG");
        assert_eq!(cell(Level::Retain, Tier::Diamond), "BD");
        assert_eq!(cell(Level::Prevent, Tier::Silver), "BS");
        assert_eq!(cell(Level::WinBack, Tier::Silver), "CS");
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = Status {
            level: Level::Normal,
            lifecycle: Lifecycle::Active,
            tier: Tier::Gold,
        };
        let b = Status {
            level: Level::Retain,
            lifecycle: Lifecycle::QuasiChurned,
            tier: Tier::Gold,
        };
        let t = Ts(1_000);
        assert_eq!(
            change_id("c", t, &a, &b, Trigger::Timer),
            change_id("c", t, &a, &b, Trigger::Timer)
        );
        assert_ne!(
            change_id("c", t, &a, &b, Trigger::Timer),
            change_id("d", t, &a, &b, Trigger::Timer)
        );
        assert_ne!(
            change_id("c", t, &a, &b, Trigger::Timer),
            change_id("c", Ts(1_001), &a, &b, Trigger::Timer)
        );
    }

    #[test]
    fn silver_churned_gets_no_budget() {
        let s = Status {
            level: Level::WinBack,
            lifecycle: Lifecycle::Churned,
            tier: Tier::Silver,
        };
        assert_eq!(recommended_actions(&s, &[]), vec!["no_after_sales_budget"]);
        assert_eq!(Level::WinBack.lowered(), Level::Retain);
        assert_eq!(Level::Normal.lowered(), Level::Normal);
    }
}
